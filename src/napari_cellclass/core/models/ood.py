"""Out-of-distribution statistics: how unlike the training data an image looks.

A class-conditional Gaussian with one shared covariance is fitted to the pooled
(penultimate) features of the training images; an image's ``ood_score`` is its
smallest Mahalanobis distance to a class mean (higher = less like the training
data).  The shared covariance is the Ledoit–Wolf shrinkage estimate (sklearn): a
few dozen images in a 64–2048-dimensional feature space make the plain estimate
singular, shrinkage keeps it invertible.  Features are scaled to unit length first
(:func:`unit_rows`).  The flag's threshold is a percentile of
the scores of held-out in-distribution images (95 %: 19 of 20 such images pass).
Why this score and not energy or max-softmax: docs/trust.md.

The statistics live as tensors in the model file under :data:`TENSOR_PREFIX`, never
in the network's state, so an older reader's tensor check is not confused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ModelFileError

TENSOR_PREFIX = "__ood__."
NO_STATS = "no OOD statistics in this model: retrain or fine-tune to add them"


@dataclass
class OodStats:
    """Class means (K, D), the shared precision matrix (D, D) and the flag threshold."""

    means: np.ndarray
    precision: np.ndarray
    threshold: float
    percentile: float = 95.0
    fitted_on: str = ""

    def score(self, pooled: np.ndarray | torch.Tensor) -> np.ndarray:
        """Smallest Mahalanobis distance of each row of ``pooled`` (N, D) to a class mean."""
        f = unit_rows(torch.as_tensor(np.asarray(pooled.detach().cpu() if isinstance(pooled, torch.Tensor) else pooled),
                                      dtype=torch.float64))
        mu = torch.from_numpy(self.means.astype(np.float64))
        prec = torch.from_numpy(self.precision.astype(np.float64))
        d = f[:, None, :] - mu[None, :, :]  # (N, K, D)
        m2 = torch.einsum("nkd,de,nke->nk", d, prec, d).clamp_min(0.0)
        return m2.min(dim=1).values.sqrt().numpy().astype(np.float32)

    def flags(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) > self.threshold

    def tensors(self) -> dict[str, torch.Tensor]:
        """What the model file stores: every number, as tensors."""
        return {
            TENSOR_PREFIX + "means": torch.from_numpy(np.ascontiguousarray(self.means, np.float32)),
            TENSOR_PREFIX + "precision": torch.from_numpy(np.ascontiguousarray(self.precision, np.float32)),
            TENSOR_PREFIX + "threshold": torch.tensor([self.threshold, self.percentile], dtype=torch.float32),
        }

    def describe(self) -> str:
        k, d = self.means.shape
        return (f"OOD: Mahalanobis distance to {k} class means in {d} unit-length pooled features; flagged above "
                f"{self.threshold:.3g} ({self.percentile:g}th percentile of {self.fitted_on or 'held-out images'})")


def unit_rows(f: torch.Tensor) -> torch.Tensor:
    """Each feature vector scaled to length 1.  Without it a sparse, dark image of
    another modality gives small activations that sit near every class mean (AUROC
    0.87 vs 1.0 on the test task of tests/test_trust.py; docs/trust.md)."""
    return f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _means(f: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    return np.stack([f[y == k].mean(0) if np.any(y == k) else f.mean(0) for k in range(n_classes)])


def _low_rank(c: np.ndarray) -> tuple[float, np.ndarray] | None:
    """sklearn's Ledoit–Wolf covariance of the centred rows ``c`` (N, D) as ``a I + b cᵀc``, with
    ``(a, inverse of (a/b) I_N + c cᵀ)`` — the Woodbury form of its precision — when N < D and
    the shrinkage is positive; None otherwise.  The shrinkage is sklearn's formula
    (``ledoit_wolf_shrinkage``) written with N × N Gram sums instead of D × D ones."""
    n, d = c.shape
    if n >= d:
        return None
    r = (c * c).sum(1)  # squared row norms
    gram = c @ c.T
    mu = r.sum() / (n * d)
    beta_, delta_ = float(np.sum(r * r)), float(np.sum(gram * gram)) / n**2
    beta = (beta_ / n - delta_) / (d * n)
    delta = (delta_ - 2.0 * mu * r.sum() / n + d * mu**2) / d
    beta = min(beta, delta)
    shrink = 0.0 if beta == 0 else beta / delta
    a, b = shrink * mu, (1.0 - shrink) / n
    if not a > 1e-12 * max(mu, 1e-300):
        return None  # (almost) no shrinkage: singular, sklearn's pseudo-inverse applies
    if b <= 0:
        return a, np.zeros((n, n))
    return a, np.linalg.inv((a / b) * np.eye(n) + gram)


def _gaussian(f: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Class means and the shared Ledoit–Wolf precision.  With fewer images than feature
    dimensions (every fine-tune of a few hundred labels) the precision comes from the Woodbury
    identity — an N × N inverse instead of a D × D eigendecomposition (0.3–1.5 s at D = 1280,
    each time live mode retrains); the same matrix as sklearn's to float rounding."""
    from sklearn.covariance import LedoitWolf

    means = _means(f, y, n_classes)
    c = f - means[y]
    low = _low_rank(c)
    if low is None:
        lw = LedoitWolf(assume_centered=True).fit(c)
        return means.astype(np.float32), lw.precision_.astype(np.float32)
    a, inner = low
    prec = -(c.T @ (inner @ c))
    prec[np.diag_indices_from(prec)] += 1.0
    return means.astype(np.float32), (prec / a).astype(np.float32)


def _fold_scores(f: np.ndarray, y: np.ndarray, n_classes: int, h: np.ndarray) -> np.ndarray:
    """``OodStats.score`` of the unit rows ``h`` under a Gaussian fitted on ``(f, y)``, without forming
    its D × D precision where the Woodbury form applies (the cross-fitted threshold needs scores only)."""
    means = _means(f, y, n_classes)
    c = f - means[y]
    low = _low_rank(c)
    if low is None:
        m, p = _gaussian(f, y, n_classes)
        return OodStats(m, p, 0.0).score(h)
    a, inner = low
    d = h[:, None, :] - means[None, :, :]  # (M, K, D)
    cd = d @ c.T  # (M, K, N)
    m2 = ((d * d).sum(-1) - ((cd @ inner) * cd).sum(-1)) / a
    return np.sqrt(np.clip(m2, 0.0, None).min(axis=1)).astype(np.float32)


def fit_stats(features: np.ndarray, labels: np.ndarray, n_classes: int, held_out: np.ndarray,
              held_labels: np.ndarray | None = None, percentile: float = 95.0, fitted_on: str = "",
              folds: int = 5) -> OodStats:
    """Fit means and a shared Ledoit–Wolf covariance on unit-length ``features`` (N, D) with
    integer ``labels``; set the threshold on the scores of ``held_out`` (M, D) in-distribution images.

    With ``held_labels`` the held-out images join the fit too (a few dozen training
    images leave the covariance starved: AUROC 0.80 → 0.99 on the test task), and their
    threshold scores are cross-fitted: each fold of them is scored by a Gaussian fitted
    without it, so the threshold stays one of images the statistics never saw."""
    f = unit_rows(torch.as_tensor(np.asarray(features, np.float64))).numpy()
    h = unit_rows(torch.as_tensor(np.asarray(held_out, np.float64))).numpy()
    y = np.asarray(labels, int)
    if held_labels is None or len(h) < folds:
        means, prec = _gaussian(f, y, n_classes)
        stats = OodStats(means, prec, 0.0, percentile, fitted_on)
        stats.threshold = float(np.percentile(stats.score(h), percentile))
        return stats
    hy = np.asarray(held_labels, int)
    fold = np.arange(len(h)) % folds
    scores = np.empty(len(h), np.float32)
    for j in range(folds):
        rest = fold != j
        scores[~rest] = _fold_scores(np.concatenate([f, h[rest]]), np.concatenate([y, hy[rest]]), n_classes, h[~rest])
    means, prec = _gaussian(np.concatenate([f, h]), np.concatenate([y, hy]), n_classes)
    return OodStats(means, prec, float(np.percentile(scores, percentile)), percentile, fitted_on)


def split_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove and return the OOD tensors from a loaded state (the rest is the network's)."""
    return {k[len(TENSOR_PREFIX):]: state.pop(k) for k in [k for k in state if k.startswith(TENSOR_PREFIX)]}


def stats_from_tensors(t: dict[str, torch.Tensor], meta: dict[str, Any], feature_dim: int | None,
                       n_classes: int, where: str) -> OodStats | None:
    """Rebuild and check the statistics a file carries; ``None`` when it carries none."""
    if not t:
        return None
    fix = "retrain or fine-tune the model to fit new statistics, or re-save it from napari-cellclass"
    missing = [k for k in ("means", "precision", "threshold") if k not in t]
    if missing:
        raise ModelFileError(f"{where}: the OOD statistics are incomplete (missing {', '.join(missing)})", fix)
    means, prec, thr = (t[k].detach().cpu().double().numpy() for k in ("means", "precision", "threshold"))
    d = means.shape[1] if means.ndim == 2 else -1
    problems = []
    if means.ndim != 2 or means.shape[0] != n_classes:
        problems.append(f"class means of shape {tuple(means.shape)}, expected ({n_classes}, D)")
    elif feature_dim is not None and d != feature_dim:
        problems.append(f"class means of {d} features, the network pools {feature_dim}")
    if prec.shape != (d, d):
        problems.append(f"precision matrix of shape {tuple(prec.shape)}, expected ({d}, {d})")
    if thr.shape != (2,):
        problems.append(f"threshold of shape {tuple(thr.shape)}, expected (2,)")
    if not problems and not all(np.isfinite(a).all() for a in (means, prec, thr)):
        problems.append("values that are not finite (NaN or infinity)")
    if problems:
        raise ModelFileError(f"{where}: bad OOD statistics: {'; '.join(problems)}", fix)
    info = meta.get("ood") if isinstance(meta.get("ood"), dict) else {}
    return OodStats(means.astype(np.float32), prec.astype(np.float32), float(thr[0]), float(thr[1]),
                    str(info.get("fitted_on", "")))


def feature_dim(network: nn.Module) -> int | None:
    """Width of the pooled features the head reads, or ``None`` where it has no such head."""
    from .heads import MLPHead

    head = getattr(network, "head", None)
    return int(head.in_features) if isinstance(head, MLPHead) else None


def supports_ood(network: nn.Module) -> bool:
    """Single networks with a pooled-feature head; ensembles and FCN maps have none to read."""
    return feature_dim(network) is not None and not getattr(network, "is_fcn", False)


def logits_and_pooled(network: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass (through the contract: ``forward_features`` then ``forward_head``)
    that returns the logits and the *average*-pooled last feature map.

    Average, whatever the head pools: a max-pooled map keeps only the strongest
    response per channel, and the OOD AUROC of the test task of tests/test_trust.py
    fell from 0.99 (average) to 0.62 (the max the senescence CNN's head reads)."""
    f = network.forward_features(x)
    logits = network.forward_head(f)
    pooled = f.mean(dim=(-2, -1)) if f.ndim == 4 else f.mean(dim=1) if f.ndim == 3 else f
    return logits, pooled.float()
