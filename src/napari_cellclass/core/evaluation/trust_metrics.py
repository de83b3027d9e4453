"""What `cellclass evaluate` says about trust: calibration before/after and OOD flags.

The probabilities an evaluation collects are the model's *calibrated* ones (predict
divides the logits by the stored temperature); the raw ones are recovered by
undoing that division, so one network pass gives both columns of the comparison.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..models.bundle import ModelBundle
from . import calibration


def calibration_metrics(bundle: ModelBundle, probs: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """ECE (15 bins), Brier and NLL of the raw and the temperature-scaled probabilities."""
    from sklearn.metrics import log_loss

    if bundle.multilabel:
        return {"skipped": "multi-label model: no single confidence to calibrate"}
    t = bundle.temperature
    after = np.asarray(probs, np.float64)
    after = after / after.sum(1, keepdims=True)  # float32 softmax rows sum to 1 only within ~1e-7
    before = after if t == 1.0 else calibration.scaled_probabilities(after, 1.0 / t, bundle.output)
    labels = list(range(after.shape[1]))
    out: dict[str, Any] = {"temperature": t, **calibration.calibration_summary(before, after, y)}
    out["nll_before"] = float(log_loss(y, np.clip(before, 1e-12, 1.0), labels=labels))
    out["nll_after"] = float(log_loss(y, np.clip(after, 1e-12, 1.0), labels=labels))
    rel = calibration.reliability(after, y)
    # empty bins as null, not NaN: the JSON stays strict
    out["reliability"] = {k: [None if isinstance(v, float) and np.isnan(v) else v for v in vals] if isinstance(vals, list) else vals
                          for k, vals in rel.items()}
    if bundle.calibration is None:
        out["note"] = "no temperature in this model (fitted only when training keeps a validation split): before = after"
    return out


def ood_metrics(bundle: ModelBundle, scores: np.ndarray | None) -> dict[str, Any]:
    """How many evaluated images the model flags as unlike its training data."""
    from ..models.ood import NO_STATS

    if bundle.ood is None or scores is None or len(scores) == 0:
        return {"note": NO_STATS}
    s = np.asarray(scores, np.float64)
    flagged = bundle.ood.flags(s)
    return {"threshold": bundle.ood.threshold, "flagged": int(flagged.sum()), "n": len(s),
            "flagged_fraction": float(flagged.mean()), "score_median": float(np.median(s))}
