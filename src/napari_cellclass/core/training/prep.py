"""What ``train()`` does around the loop: choose the head of a new model, hold out
a test split, take the normaliser's statistics from the training split, score the
held-out split.

* Held-out test split (studies 2, 3, 5: 8:1:1, 80/10/10): with
  ``test_fraction > 0`` a stratified, seeded share of the data is set aside
  *before* the validation split, so it is never trained on and never used for
  early stopping or keep-best; the final model is scored on it once.  The recipe's
  ``val_fraction`` stays a share of the whole data set (0.1 + 0.1 gives 80/10/10).
* Training-set mean subtraction (study 1): ``Normalization('meansub')`` without
  stored means would subtract each image's own channel means; study 1 subtracts
  the training set's.  :func:`with_training_means` measures them on the training
  split, in the units the normaliser sees (after resizing, before normalising), and
  returns a preprocessing recipe that carries them, so the model file repeats
  training exactly at inference.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from ..data import Dataset, stratified_split
from ..errors import CellclassError, DataError
from ..models.heads import HeadSpec
from ..io.images import match_channels
from ..io.preprocess import Normalization, Preprocess


def head_for(model: str, head: Any) -> HeadSpec | None:
    """The head to build: a HeadSpec as given, or a dict of some of its fields laid over
    the architecture's (or preset's) own head, so ``--dropout 0.3`` keeps its pooling."""
    if head is None or isinstance(head, HeadSpec):
        return head
    if not isinstance(head, dict):
        raise CellclassError(f"head must be a HeadSpec or a dict of its fields, got {type(head).__name__}")
    from ..models.registry import arch_entry
    from ..presets.studies import PRESETS

    spec = PRESETS[model].arch if model in PRESETS else arch_entry(model).spec
    base = spec.members[0].head if spec.family == "ensemble" and spec.members else spec.head
    try:
        return replace(base, **{k: tuple(v) if k == "hidden" else v for k, v in head.items()})
    except TypeError as err:
        raise CellclassError(f"invalid head option: {err}", "head fields: pool, hidden, hidden_dropout, dropout") from err


def hold_out_test(ds: Dataset, test_fraction: float, seed: int) -> tuple[Dataset, Dataset | None]:
    """(the rest, the held-out test split) — None when ``test_fraction`` is 0."""
    if not test_fraction:
        return ds, None
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test fraction must be in [0, 1), got {test_fraction}", "use e.g. 0.1 for an 80/10/10 split")
    # a seed of its own, so the test split does not move when only the validation split changes
    rest, test = stratified_split(ds.labels, test_fraction, seed + 7919)
    if len(test) == 0:
        raise DataError(f"too few images ({len(ds)}) to hold out a test split of {test_fraction:g}",
                        "add images or set test_fraction to 0")
    return ds.subset(rest), ds.subset(test)


def val_share_of_rest(val_fraction: float, test_fraction: float) -> float:
    """The validation share of what is left after the test split, so that both
    fractions stay shares of the whole data set."""
    if not test_fraction:
        return val_fraction
    share = val_fraction / (1.0 - test_fraction)
    if share >= 1.0:
        raise DataError(f"val_fraction {val_fraction} + test_fraction {test_fraction} leave nothing to train on",
                        "lower one of them")
    return share


def needs_training_means(pre: Preprocess) -> bool:
    return pre.normalization.method == "meansub" and pre.normalization.mean is None


@torch.no_grad()
def training_means(ds: Dataset, pre: Preprocess, in_chans: int) -> tuple[float, ...]:
    """Per-channel mean over the training images, as the network input is cut and
    resized but before normalisation (letterbox padding excluded)."""
    raw = replace(pre, normalization=Normalization("none"))
    total = np.zeros(in_chans, np.float64)
    count = 0
    for i in range(len(ds)):
        plane, _ = ds[i]
        plane = np.ascontiguousarray(match_channels(plane, in_chans, None, ds.names[i]), dtype=np.float32)
        x, geom = raw.prepare_batch(torch.from_numpy(plane)[None])
        y0, x0, y1, x1 = geom.dst_box
        region = x[0, :, y0:y1, x0:x1].double()
        total += region.sum(dim=(1, 2)).numpy()
        count += region.shape[1] * region.shape[2]
    if count == 0:
        raise DataError("no training images to take the channel means from", "add labelled images")
    return tuple(float(v) for v in total / count)


def with_training_means(ds: Dataset, pre: Preprocess, in_chans: int) -> Preprocess:
    """``pre`` with the training set's channel means when it is meansub without means, else ``pre``."""
    if not needs_training_means(pre):
        return pre
    return replace(pre, normalization=replace(pre.normalization, mean=training_means(ds, pre, in_chans)))


def test_record(bundle: Any, test_ds: Dataset, device: Any, batch_size: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics of ``bundle`` on the held-out split, what was held out) for the provenance."""
    from ..evaluation.evaluate import evaluate

    m = evaluate(bundle, test_ds, device=device, batch_size=max(1, batch_size))
    for key in ("model", "data"):
        m.pop(key, None)
    held = {"n_test": len(test_ds), "test_class_counts": test_ds.class_counts(), "test_names": list(test_ds.names)}
    return m, held


__all__ = ["head_for", "hold_out_test", "val_share_of_rest", "needs_training_means", "training_means", "with_training_means",
           "test_record"]
