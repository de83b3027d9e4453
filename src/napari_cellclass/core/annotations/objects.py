"""Annotate segmented objects and rank them for labelling.

An object annotation is stored as a rectangle region over the object's crop window
(bounding box + margin, clipped: :func:`core.io.objects.crop_window`), so its
exported crop is exactly the crop ``predict_objects(margin=...)`` classifies, and
export, ``cellclass train`` and fine-tuning take it as they take any region.  The item
also records the object (:class:`~.schema.ObjectRef`): its label id and its label
image — the file's path when it came from disk, always the pixels' hash and the
layer's name — so a reopened session finds which open Labels layer it belongs to
(:func:`matches`) and which objects are labelled already (:func:`labelled_objects`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..io.objects import ObjectBox, check_labels, check_margin, crop_window, label_plane
from .active import uncertainty
from .imagerefs import hash_array, record_path
from .schema import Item, ObjectRef


@dataclass(frozen=True)
class LabelsSource:
    """Which label image an object annotation points at (no pixels kept)."""

    name: str
    hash: str
    path: str | None = None  # as written in the file: relative to the annotation folder when inside it


def labels_source(store: Any, labels: Any, name: str, path: str | Path | None = None) -> LabelsSource:
    """The reference an object annotation stores for ``labels`` (hashes its pixels once)."""
    where = record_path(Path(path), store.folder) if path is not None and Path(path).is_file() else None
    return LabelsSource(str(name), hash_array(np.asarray(labels) if not hasattr(labels, "shape") else labels), where)


def matches(ref: ObjectRef | LabelsSource, source: LabelsSource) -> bool:
    """Whether an annotation's label image is ``source``: the same file, else the same pixels."""
    if ref.path is not None and source.path is not None:
        return ref.path == source.path
    return ref.hash == source.hash


def object_items(store: Any, source: LabelsSource | None = None, image: str | None = None) -> list[Item]:
    """The store's object annotations (of one label image and image when given)."""
    items = store.items_of(image) if image is not None else store.items
    return [it for it in items if it.obj is not None and (source is None or matches(it.obj, source))]


def labelled_objects(store: Any, source: LabelsSource, image: str | None = None) -> dict[tuple[int, int], Item]:
    """(frame, label) -> the annotation of each labelled object of ``source``."""
    return {(it.frame, it.obj.label): it for it in object_items(store, source, image)}


def object_box(plane: np.ndarray, frame: int, label: int) -> ObjectBox:
    """The box of object ``label`` in one label plane, or a clear error when there is none."""
    ys, xs = np.nonzero(plane == label)
    if label <= 0 or ys.size == 0:
        raise DataError(f"there is no object with label {label} in frame {frame}",
                        "click on a segmented object (label 0 is the background)")
    bbox = (int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1)
    return ObjectBox(frame, int(label), (float(ys.mean()), float(xs.mean())), int(ys.size), bbox)


def annotate_object(store: Any, image: str, frame: int, labels: Any, label: int, cls: str | int,
                    margin: int = 0, source: LabelsSource | None = None) -> Item:
    """Label object ``label`` of ``labels`` (on image ``image`` of ``store``) with ``cls``.

    With ``source`` (:func:`labels_source`) the item records the object and its label
    image; an object labelled before is relabelled rather than labelled twice."""
    layout = store.layout(image)
    name = source.name if source is not None else "labels"
    plane = label_plane(check_labels(labels, layout, name, store.image(image).name), frame)
    box = object_box(plane, frame, int(label))
    margin = check_margin(margin)
    rows, cols = crop_window(box, margin, layout.height, layout.width)
    if source is None:
        # box_slices keeps the pixels whose centres lie in the closed box: the window's last row/column
        return store.add_rectangle(image, frame, cls, (rows.start, cols.start, rows.stop - 1, cols.stop - 1))
    before = labelled_objects(store, source, image).get((int(frame), int(label)))
    if before is not None and before.obj.margin == margin:
        return before if before.label == cls else store.relabel(before.id, cls)
    if before is not None:  # another margin: another crop, so the old one goes
        store.delete(before.id)
    ref = ObjectRef(int(label), source.name, source.hash, source.path, margin)
    return store.add_rectangle(image, frame, cls, (rows.start, cols.start, rows.stop - 1, cols.stop - 1), obj=ref)


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
