"""Classify every segmented object of an image: one row per object of a label image.

Each object is cut out (:mod:`core.io.objects`: bounding box + margin, optionally
masked), preprocessed by the model's own recipe (resize policy, normalisation) as
:func:`predict` does for a whole image, and classified in batches.  An object whose
crop is the whole image therefore gets exactly ``predict()``'s probabilities.

:func:`predict_objects_steps` is a generator of :class:`~core.progress.Progress`
reports (each carrying the batch's finished rows in ``item``) that returns the
:class:`ObjectTable`: the viewer's worker and the CLI stream rows and can stop
between batches; memory holds one batch of crops plus a few numbers per object.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..device import eval_mode, prepare_network, resolve_device
from ..errors import CellclassError
from ..io.images import ChannelAxis, inspect, match_channels
from ..io.objects import (
    ObjectBox,
    check_labels,
    check_margin,
    iter_object_boxes,
    label_plane,
    object_crop,
)
from ..io.prefetch import prefetch
from ..models.bundle import ModelBundle
from ..progress import Progress, drain
from .options import RunOptions, run_options
from .predict import label_of, network_inputs, resolve_source, run_network


@dataclass
class ObjectPrediction:
    """One object's row: where it is and the class probabilities."""

    box: ObjectBox
    probs: np.ndarray  # (K,)
    predicted_class: str
    ood_score: float | None = None  # core.models.ood, as for images (None: the model has no statistics)
    ood: bool | None = None  # ood_score above the model's threshold

    @property
    def confidence(self) -> float:
        return float(np.max(self.probs)) if self.probs.size else float("nan")


@dataclass
class ObjectTable:
    """Per-object results of one image or stack, in frame then label order."""

    classes: list[str]
    rows: list[ObjectPrediction] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def labels(self) -> np.ndarray:
        return np.array([r.box.label for r in self.rows], dtype=np.int64)

    @property
    def probs(self) -> np.ndarray:
        """(N, K) float32; (0, K) for an image without objects."""
        if not self.rows:
            return np.zeros((0, len(self.classes)), np.float32)
        return np.stack([r.probs for r in self.rows]).astype(np.float32)

    def columns(self) -> dict[str, np.ndarray]:
        """Column name → values: frame, label, centroid, area, bbox, predicted class, confidence, p_<class>.

        A plain dict of equal-length arrays, which a napari Labels layer takes as ``features``
        and ``pandas.DataFrame`` as it is."""
        rows = self.rows
        probs = self.probs
        out: dict[str, np.ndarray] = {
            "frame": np.array([r.box.frame for r in rows], dtype=np.int64),
            "label": self.labels,
            "centroid_y": np.array([r.box.centroid[0] for r in rows], dtype=np.float64),
            "centroid_x": np.array([r.box.centroid[1] for r in rows], dtype=np.float64),
            "area": np.array([r.box.area for r in rows], dtype=np.int64),
        }
        for j, key in enumerate(("bbox_r0", "bbox_c0", "bbox_r1", "bbox_c1")):
            out[key] = np.array([r.box.bbox[j] for r in rows], dtype=np.int64)
        out["predicted_class"] = np.array([r.predicted_class for r in rows], dtype=object)
        out["confidence"] = np.array([r.confidence for r in rows], dtype=np.float64)
        for k, c in enumerate(self.classes):
            out[f"p_{c}"] = probs[:, k].astype(np.float64)
        # None (not NaN) without OOD statistics: "not measured" is not a score
        out["ood_score"] = np.array([r.ood_score for r in rows], dtype=object)
        out["ood"] = np.array([r.ood for r in rows], dtype=object)
        return out


@dataclass
class _Crop:
    box: ObjectBox
    plane: np.ndarray  # (C, h, w) matched to the model's channels


def _crops(data: Any, layout: Any, labels: Any, margin: int, mask: bool, in_chans: int,
           channels: list[int] | None, name: str, label_name: str) -> Iterator[_Crop]:
    for _t, lab, boxes in iter_object_boxes(labels, layout.n_frames, label_name):
        for box in boxes:
            crop = object_crop(data, layout, lab, box, margin, mask, name)
            yield _Crop(box, match_channels(crop, in_chans, channels, name))


def count_objects(labels: Any, n_frames: int, name: str = "labels") -> int:
    """How many objects all frames hold (reads the label planes only)."""
    total = 0
    for t in range(n_frames):
        ids = np.unique(label_plane(labels, t, name))
        total += int(ids.size - (ids[0] == 0 if ids.size else 0))
    return total


def predict_objects_steps(
    bundle: ModelBundle,
    image: Any,
    labels: Any,
    margin: int = 0,
    mask: bool = False,
    *,
    options: RunOptions | None = None,
    channel_axis: ChannelAxis = "auto",
    name: str | None = None,
    label_name: str = "labels",
) -> Generator[Progress, None, ObjectTable]:
    """Classify every object; yields a Progress per batch (``item``: that batch's rows), returns the table.

    ``image`` is an array, a file path, an ImageFile or a napari layer (a stack (T, …)
    takes a label stack (T, H, W), or one (H, W) label image for every frame);
    ``labels`` an integer array or a Labels layer on the same grid."""
    o = run_options(options, channel_axis=channel_axis)
    margin = check_margin(margin)
    data, axis, rgb, src_name = resolve_source(image, 0, o.channel_axis)
    name = name or src_name
    layout, vmax = inspect(data, axis, None if o.channels else bundle.in_chans, rgb, name)
    labels = check_labels(labels, layout, label_name, name)
    total = count_objects(labels, layout.n_frames, label_name)
    table = ObjectTable(list(bundle.classes))
    yield Progress(0, total, f"{total} objects", "objects")
    if total == 0:
        return table
    dev = resolve_device(o.device)
    crops = prefetch(_crops(data, layout, labels, margin, mask, bundle.in_chans, o.channel_list, name, label_name),
                     2 * o.batch_size)
    with bundle.lock, eval_mode(bundle.network):
        prepare_network(bundle.network, dev)
        batch: list[_Crop] = []
        for crop in crops:
            batch.append(crop)
            if len(batch) >= o.batch_size:
                yield _classified(bundle, batch, vmax, dev, o, table, total)
                batch = []
        if batch:
            yield _classified(bundle, batch, vmax, dev, o, table, total)
    return table


def _classified(bundle: ModelBundle, batch: list[_Crop], vmax: float | None, dev: Any, o: RunOptions,
                table: ObjectTable, total: int) -> Progress:
    x = network_inputs(bundle, [c.plane for c in batch], [vmax] * len(batch), dev)
    scores: list[float] = []
    probs = run_network(bundle, x, dev, o.amp, ood_scores=scores)
    flags = iter(scores)
    rows = [ObjectPrediction(c.box, p, label_of(p, bundle), **_ood_fields(bundle, flags)) for c, p in zip(batch, probs)]
    table.rows.extend(rows)
    return Progress(len(table.rows), total, f"{len(table.rows)}/{total} objects", "objects", item=rows)


def _ood_fields(bundle: ModelBundle, scores: Iterator[float]) -> dict[str, Any]:
    score = next(scores, None)
    if score is None or bundle.ood is None:
        return {}
    return {"ood_score": float(score), "ood": bool(score > bundle.ood.threshold)}


def predict_objects(
    bundle: ModelBundle,
    image: Any,
    labels: Any,
    margin: int = 0,
    mask: bool = False,
    *,
    options: RunOptions | None = None,
    channel_axis: ChannelAxis = "auto",
) -> ObjectTable:
    """The per-object table of ``image`` segmented by ``labels`` (see :func:`predict_objects_steps`).

    >>> table = predict_objects(bundle, image, labels, margin=8)        # doctest: +SKIP
    >>> pandas.DataFrame(table.columns())                                # doctest: +SKIP
    """
    if bundle is None:
        raise CellclassError("no model to classify the objects with", "load or build a model first")
    return drain(predict_objects_steps(bundle, image, labels, margin, mask, options=options, channel_axis=channel_axis))
