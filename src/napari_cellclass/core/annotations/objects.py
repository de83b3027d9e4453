"""Annotate segmented objects and rank them for labelling.

An object annotation is stored as a rectangle region over the object's crop window
(bounding box + margin, clipped: :func:`core.io.objects.crop_window`), so its
exported crop is exactly the crop ``predict_objects(margin=...)`` classifies, and
export, ``cellclass train`` and fine-tuning take it as they take any region.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DataError
from ..io.objects import ObjectBox, check_labels, check_margin, crop_window, label_plane
from .active import uncertainty
from .schema import Item


def object_box(plane: np.ndarray, frame: int, label: int) -> ObjectBox:
    """The box of object ``label`` in one label plane, or a clear error when there is none."""
    ys, xs = np.nonzero(plane == label)
    if label <= 0 or ys.size == 0:
        raise DataError(f"there is no object with label {label} in frame {frame}",
                        "click on a segmented object (label 0 is the background)")
    bbox = (int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1)
    return ObjectBox(frame, int(label), (float(ys.mean()), float(xs.mean())), int(ys.size), bbox)


def annotate_object(store: Any, image: str, frame: int, labels: Any, label: int, cls: str | int,
                    margin: int = 0) -> Item:
    """Label object ``label`` of ``labels`` (on image ``image`` of ``store``) with ``cls``."""
    layout = store.layout(image)
    plane = label_plane(check_labels(labels, layout, "labels", store.image(image).name), frame)
    box = object_box(plane, frame, int(label))
    rows, cols = crop_window(box, check_margin(margin), layout.height, layout.width)
    # box_slices keeps the pixels whose centres lie in the closed box: the window's last row/column
    return store.add_rectangle(image, frame, cls, (rows.start, cols.start, rows.stop - 1, cols.stop - 1))


def label_at(labels: Any, frame: int, point: tuple[float, float]) -> int:
    """The object id under a (row, column) point of a frame (0: background or outside)."""
    plane = label_plane(labels, frame) if getattr(labels, "ndim", 2) in (2, 3) else np.asarray(labels)
    r, c = (int(np.floor(v + 0.5)) for v in point)
    if not (0 <= r < plane.shape[0] and 0 <= c < plane.shape[1]):
        return 0
    return int(plane[r, c])


def rank_objects(table: Any, method: str = "margin", skip: set[tuple[int, int]] | None = None) -> list[tuple[int, int, float]]:
    """(frame, label, score) of an :class:`ObjectTable`'s objects, most uncertain first;
    ``skip`` leaves out objects already labelled.  Ties keep table order."""
    if not len(table):
        return []
    scores = uncertainty(table.probs, method)
    keys = [(r.box.frame, r.box.label) for r in table.rows]
    order = sorted(range(len(keys)), key=lambda i: (-float(scores[i]), i))
    skip = skip or set()
    return [(*keys[i], float(scores[i])) for i in order if keys[i] not in skip]
