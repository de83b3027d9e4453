"""Per-class decision thresholds that maximise Dice (study 5: steps of 0.01)."""

from __future__ import annotations

import numpy as np


def dice_per_threshold(y_true: np.ndarray, probs: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Dice ``2TP / (2TP + FP + FN)`` of every class at every threshold: (T, K)."""
    y = np.asarray(y_true, bool)
    p = np.asarray(probs, np.float64)
    pred = p[None, :, :] >= grid[:, None, None]  # (T, N, K)
    tp = (pred & y[None]).sum(1)
    fp = (pred & ~y[None]).sum(1)
    fn = (~pred & y[None]).sum(1)
    denom = 2 * tp + fp + fn
    # a class never present and never predicted is perfectly handled: Dice 1
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 1.0)


def choose_thresholds(y_true: np.ndarray, probs: np.ndarray, step: float = 0.01) -> list[float]:
    """Per class, the threshold in ``step`` increments (step … 1 - step) with the best
    Dice; ties go to the threshold closest to 0.5, so rare classes do not drift."""
    y = np.asarray(y_true)
    p = np.asarray(probs)
    if y.shape != p.shape or y.ndim != 2:
        raise ValueError(f"y_true {y.shape} and probs {p.shape} must both be (N, K)")
    if not 0.0 < step < 0.5:
        raise ValueError(f"threshold step must be in (0, 0.5), got {step}")
    grid = np.round(np.arange(step, 1.0 - step / 2, step), 6)
    dice = dice_per_threshold(y, p, grid)  # (T, K)
    out = []
    for k in range(y.shape[1]):
        best = dice[:, k].max()
        cands = grid[np.isclose(dice[:, k], best)]
        out.append(float(cands[np.argmin(np.abs(cands - 0.5))]))
    return out


def macro_f1(t: np.ndarray, pred: np.ndarray, k: int) -> float:
    """sklearn's ``f1_score(t, pred, average="macro", labels=range(k), zero_division=0)`` from a
    confusion matrix: the same number (tests/test_live_incremental.py) without sklearn's input
    checks, which took ~30 ms per epoch — most of a cached head-only epoch, and Python work that
    keeps live mode's worker holding the GIL."""
    cm = np.bincount(np.asarray(t, np.int64) * k + np.asarray(pred, np.int64), minlength=k * k).reshape(k, k)
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(0) + cm.sum(1)  # 2 tp + fp + fn
    return float(np.mean(np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)))
