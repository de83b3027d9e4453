"""Out-of-distribution statistics: how unlike the training data an image looks.

A class-conditional Gaussian with one shared covariance is fitted to the pooled
(penultimate) features of the training images; an image's ``ood_score`` is its
smallest Mahalanobis distance to a class mean (higher = less like the training
data).  The shared covariance is the Ledoit–Wolf shrinkage estimate (sklearn): a
few dozen images in a 64–2048-dimensional feature space make the plain estimate
singular, shrinkage keeps it invertible.  The flag's threshold is a percentile of
the scores of held-out in-distribution images (95 %: 19 of 20 such images pass).
Why this score and not energy or max-softmax: docs/trust.md.

The statistics live as tensors in the model file under :data:`TENSOR_PREFIX`, never
in the network's state, so an older reader's tensor check is not confused.
"""

from __future__ import annotations

from collections.abc import Callable
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
        f = torch.as_tensor(np.asarray(pooled.detach().cpu() if isinstance(pooled, torch.Tensor) else pooled),
                            dtype=torch.float64)
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
        return (f"OOD: Mahalanobis distance to {k} class means in {d} pooled features; flagged above "
                f"{self.threshold:.3g} ({self.percentile:g}th percentile of {self.fitted_on or 'held-out images'})")


def fit_stats(features: np.ndarray, labels: np.ndarray, n_classes: int, held_out: np.ndarray,
              percentile: float = 95.0, fitted_on: str = "") -> OodStats:
    """Fit means and a shared Ledoit–Wolf covariance on ``features`` (N, D) with integer
    ``labels``; set the threshold on the scores of ``held_out`` (M, D) in-distribution images."""
    from sklearn.covariance import LedoitWolf

    f = np.asarray(features, np.float64)
    y = np.asarray(labels, int)
    means = np.stack([f[y == k].mean(0) if np.any(y == k) else f.mean(0) for k in range(n_classes)])
    centred = f - means[y]
    lw = LedoitWolf(assume_centered=True).fit(centred)
    stats = OodStats(means.astype(np.float32), lw.precision_.astype(np.float32), 0.0, percentile, fitted_on)
    stats.threshold = float(np.percentile(stats.score(held_out), percentile))
    return stats


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


def logits_and_pooled(network: nn.Module, x: torch.Tensor,
                      forward: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass that returns the logits and the pooled features the head received."""
    seen: list[torch.Tensor] = []
    handle = network.head.register_forward_hook(lambda _m, inp, _out: seen.append(inp[0]))  # type: ignore[union-attr]
    try:
        logits = (forward or network)(x)
    finally:
        handle.remove()
    return logits, seen[-1].float()
