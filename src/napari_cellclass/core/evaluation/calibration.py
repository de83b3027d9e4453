"""Calibrated confidence: temperature scaling, expected calibration error, Brier score.

Temperature scaling (Guo et al. 2017) divides every logit by one number ``T``
fitted on held-out images by minimising their negative log-likelihood; it never
changes which class wins, only how sure the model says it is.  ECE uses 15 equal
-width bins of the top-class probability; Brier and NLL come from sklearn.
Single-label models only (softmax or binary output): a multi-label model's
per-class sigmoids have no one "confidence" to calibrate against accuracy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import DataError

N_BINS = 15


def _probs(logits: torch.Tensor, output: str) -> torch.Tensor:
    from ..models.heads import probabilities

    return probabilities(logits, output)


def nll(logits: np.ndarray | torch.Tensor, y: np.ndarray, output: str, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true classes ``y`` at ``temperature``."""
    from sklearn.metrics import log_loss

    p = _probs(torch.as_tensor(np.asarray(logits), dtype=torch.float64) / temperature, output).numpy()
    k = p.shape[1]
    return float(log_loss(np.asarray(y, int), np.clip(p, 1e-12, 1.0), labels=list(range(k))))


def fit_temperature(logits: np.ndarray | torch.Tensor, y: np.ndarray, output: str, max_iter: int = 100) -> float:
    """The temperature minimising the NLL of ``logits`` (N, outputs) for classes ``y`` (LBFGS on log T)."""
    if output not in ("softmax", "binary"):
        raise DataError(f"temperature scaling needs a single-label model, this one has output {output!r}",
                        "calibrate single-label (softmax or binary) models only")
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    target = torch.as_tensor(np.asarray(y), dtype=torch.long)
    if len(z) == 0:
        raise DataError("no held-out images to fit the temperature on", "keep a validation split")
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)  # T = exp(log_t) stays positive
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        p = _probs(z / log_t.exp(), output).clamp_min(1e-12)
        loss = torch.nn.functional.nll_loss(p.log(), target)
        loss.backward()
        return loss

    opt.step(closure)
    # a degenerate fit (all right and separable: T → 0) is kept within a sane range
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def reliability(probs: np.ndarray, y: np.ndarray, n_bins: int = N_BINS) -> dict[str, Any]:
    """Per bin of top-class probability: mean confidence, accuracy and count; plus ECE."""
    p = np.asarray(probs, np.float64)
    conf = p.max(1)
    right = (p.argmax(1) == np.asarray(y, int)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, conf, n_bins) / count
        acc = np.bincount(idx, right, n_bins) / count
    filled = count > 0
    ece = float(np.sum(count[filled] / max(1, len(conf)) * np.abs(acc[filled] - mean_conf[filled])))
    return {"edges": edges.tolist(), "confidence": np.where(filled, mean_conf, np.nan).tolist(),
            "accuracy": np.where(filled, acc, np.nan).tolist(), "count": count.astype(int).tolist(), "ece": ece}


def ece(probs: np.ndarray, y: np.ndarray, n_bins: int = N_BINS) -> float:
    """Expected calibration error of the top-class probability (``n_bins`` equal-width bins)."""
    return float(reliability(probs, y, n_bins)["ece"])


def brier(probs: np.ndarray, y: np.ndarray) -> float:
    """Multi-class Brier score (sklearn): mean squared error of the probability vector."""
    from sklearn.metrics import brier_score_loss

    p = np.asarray(probs, np.float64)
    p = p / p.sum(1, keepdims=True)
    return float(brier_score_loss(np.asarray(y, int), p, labels=list(range(p.shape[1])),
                                  scale_by_half=False))  # one convention (sum over classes) for every K


def calibration_summary(probs_before: np.ndarray, probs_after: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """ECE and Brier of the raw and the temperature-scaled probabilities."""
    return {"ece_before": ece(probs_before, y), "ece_after": ece(probs_after, y),
            "brier_before": brier(probs_before, y), "brier_after": brier(probs_after, y)}


def scaled_probabilities(probs: np.ndarray, temperature: float, output: str) -> np.ndarray:
    """Re-scale probabilities (N, K) as if their logits had been divided by ``temperature``."""
    from ..models.heads import logits_from_probabilities

    z = logits_from_probabilities(torch.as_tensor(np.asarray(probs), dtype=torch.float64), output, eps=1e-12)
    return _probs(z / temperature, output).numpy()
