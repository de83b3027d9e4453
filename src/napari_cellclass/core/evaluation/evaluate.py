"""Score a model on a labelled data set: what `cellclass evaluate` writes.

Probabilities come from the same preprocessing and network call as prediction
(``core.predict.network_inputs`` / ``run_network``); the data set's planes are
fed with their value range, so a ``/255`` normalisation sees what it sees at
training time.  Data classes are matched to the model's *by name*: a data set may
lack some of the model's classes (support 0), but a class the model does not know
is an error, not a silent mislabel.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..models.bundle import ModelBundle
from ..errors import DataError
from ..inference.options import RunOptions, run_options


@dataclass
class EvaluationData:
    """Everything the metrics and the report need: one row per image."""

    classes: list[str]
    probs: np.ndarray  # (N, K) the model's probabilities
    labels: list[list[int]]  # model-class indices per image
    names: list[str]
    multilabel: bool
    thresholds: list[float]
    ood_scores: np.ndarray | None = None  # per image, where the model has OOD statistics

    def y_single(self) -> np.ndarray:
        return np.asarray([lab[0] for lab in self.labels], np.int64)

    def y_multi(self) -> np.ndarray:
        y = np.zeros(self.probs.shape, np.int64)
        for i, lab in enumerate(self.labels):
            y[i, lab] = 1
        return y


def as_dataset(bundle: ModelBundle, data: Any, channel_axis: Any = "auto") -> Any:
    """``data`` as a core.data Dataset (a Dataset is used as it is)."""
    from ..data import Dataset, load_dataset

    if isinstance(data, Dataset):
        return data
    return load_dataset(data, channel_axis=channel_axis)


def model_labels(bundle: ModelBundle, ds: Any) -> list[list[int]]:
    """The data set's labels as indices into the model's classes, or a clear error."""
    counts = ds.class_counts()
    used = [c for c, n in zip(ds.classes, counts) if n > 0]
    unknown = [c for c in used if c not in bundle.classes]
    if unknown:
        raise DataError(
            f"the data has class(es) {unknown} that the model does not know (model classes: {bundle.classes})",
            "evaluate with a model trained on these classes, or remove those images from the data set",
        )
    if ds.multilabel and not bundle.multilabel:
        raise DataError("the data set is multi-label (images with several or no labels) but the model is single-label",
                        "evaluate a multi-label model, or give every image exactly one label")
    index = {c: bundle.classes.index(c) for c in used}
    return [[index[ds.classes[k]] for k in lab] for lab in ds.labels]


def network_batches(bundle: ModelBundle, ds: Any, device: torch.device, batch_size: int) -> Iterator[tuple[list[int], torch.Tensor]]:
    """(item indices, network input) batches of a Dataset; images are read one batch ahead."""
    from ..io.images import match_channels
    from ..inference.predict import network_inputs
    from ..io.prefetch import prefetch

    def items() -> Iterator[tuple[int, np.ndarray, float | None]]:
        for i in range(len(ds)):
            plane, vmax = ds[i]
            yield i, match_channels(plane, bundle.in_chans, None, ds.names[i]), vmax

    batch: list[tuple[int, np.ndarray, float | None]] = []
    for it in prefetch(items(), 2 * batch_size):
        batch.append(it)
        if len(batch) == batch_size:
            yield [b[0] for b in batch], network_inputs(bundle, [b[1] for b in batch], [b[2] for b in batch], device)
            batch = []
    if batch:
        yield [b[0] for b in batch], network_inputs(bundle, [b[1] for b in batch], [b[2] for b in batch], device)


def evaluation_data(bundle: ModelBundle, data: Any, device: str | torch.device = "auto", batch_size: int = 32,
                    channel_axis: Any = "auto", amp: bool = True) -> EvaluationData:
    """Run the model over every image of ``data`` and pair its output with the labels."""
    from ..device import eval_mode, prepare_network, resolve_device
    from ..inference.predict import run_network

    if batch_size < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")
    ds = as_dataset(bundle, data, channel_axis)
    if len(ds) == 0:
        raise DataError("the data set is empty", "add labelled images")
    labels = model_labels(bundle, ds)
    dev = resolve_device(device)
    rows: list[np.ndarray] = []
    scores: list[float] = []
    with bundle.lock, eval_mode(bundle.network):
        prepare_network(bundle.network, dev)
        for _, x in network_batches(bundle, ds, dev, batch_size):
            rows.append(run_network(bundle, x, dev, amp, ood_scores=scores))
    probs = np.concatenate(rows).astype(np.float64)
    return EvaluationData(list(bundle.classes), probs, labels, list(ds.names), bundle.multilabel, bundle.class_thresholds(),
                          np.asarray(scores, np.float64) if scores else None)


def metrics_of(ev: EvaluationData) -> dict[str, Any]:
    from .metrics import classification_metrics, multilabel_metrics

    if ev.multilabel:
        return multilabel_metrics(ev.y_multi(), ev.probs, ev.classes, ev.thresholds)
    return classification_metrics(ev.y_single(), ev.probs, ev.classes)


def evaluate(bundle: ModelBundle, data: Any, device: str | torch.device = "auto", batch_size: int = 32,
             channel_axis: Any = "auto", *, options: RunOptions | None = None) -> dict[str, Any]:
    """Metrics of ``bundle`` on the labelled ``data`` (a Dataset, folder or CSV manifest).

    Always: ``classes``, ``n_images``, ``accuracy``, ``macro_f1``, ``per_class``
    {precision, recall, f1, support}, ``confusion_matrix`` (rows = true class),
    ``auc_macro`` (None with ``auc_note`` when undefined), ``auc_per_class``.
    Single-label models add ``confidence`` (right vs wrong); multi-label models add
    ``mean_dice``, ``exact_match``, ``thresholds`` (the model's), per-class Dice and
    study 5's correct rates (see :func:`core.metrics.multilabel_metrics`).
    """
    o = run_options(options, device=device, batch_size=batch_size, channel_axis=channel_axis)
    if o.channels is not None:
        raise DataError("evaluate() reads every channel of a data set; RunOptions.channels does not apply",
                        "leave channels out (a data set's images must already have the model's channels)")
    ev = evaluation_data(bundle, data, o.device, o.batch_size, o.channel_axis)
    out = metrics_of(ev)
    from .trust_metrics import calibration_metrics, ood_metrics

    if not ev.multilabel:
        out["calibration"] = calibration_metrics(bundle, ev.probs, ev.y_single())
    out["ood"] = ood_metrics(bundle, ev.ood_scores)
    out["model"] = {"source": bundle.provenance.get("loaded_from"), "architecture": bundle.arch.describe(),
                    "output": bundle.output}
    out["data"] = str(data) if isinstance(data, (str, os.PathLike)) else f"{len(ev.names)} images"
    return out
