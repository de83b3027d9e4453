"""Out-of-distribution statistics: how unlike the training data an image looks.

The score looks at several *parts* of one forward pass (:mod:`core.models.ood_parts`):
the input's intensity and texture statistics, the feature maps of several depths and
the pooled features.  For each part a class-conditional Gaussian with one shared
covariance is fitted to the training images; the part's distance is an image's
smallest Mahalanobis distance to a class mean.  The shared covariance is the
Ledoit–Wolf shrinkage estimate (sklearn): a few dozen images in a 64–2048-dimensional
feature space make the plain estimate singular, shrinkage keeps it invertible.  Each
part's distance is standardised by the mean and spread of held-out in-distribution
images' distances, and the ``ood_score`` is the mean of the standardised distances
(higher = less like the training data; Lee et al. 2018 combine depths the same way,
without the outlier data a learnt weighting would need).  The flag's threshold is a
percentile of the scores of held-out in-distribution images (95 %: 19 of 20 pass).
Why this score and not energy, kNN or max-softmax: docs/measurements/trust.md.

Files of the first trust format (one part: the pooled features, no standardisation)
still load and score as before; their card says the statistics are of the older kind.
The statistics live as tensors under :data:`TENSOR_PREFIX` (:mod:`core.models.ood_file`),
never in the network's state, so an older reader's tensor check is not confused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..errors import ModelFileError
from . import ood_file, ood_parts
from .ood_file import NO_STATS, TENSOR_PREFIX, split_tensors  # noqa: F401  (callers read them from here)

Features = Mapping[str, np.ndarray | torch.Tensor]


@dataclass
class PartStats:
    """One part's class means (K, D), shared precision (D, D) and score standardisation."""

    name: str
    means: np.ndarray
    precision: np.ndarray
    loc: float = 0.0
    scale: float = 1.0

    @property
    def unit(self) -> bool:
        """Pooled features are scaled to unit length first (:func:`unit_rows`)."""
        return self.name == ood_parts.POOLED

    def distance(self, feats: np.ndarray | torch.Tensor) -> np.ndarray:
        """Smallest Mahalanobis distance of each row of ``feats`` (N, D) to a class mean."""
        f = torch.as_tensor(_np(feats), dtype=torch.float64)
        if f.ndim != 2 or f.shape[1] != self.means.shape[1]:
            raise ModelFileError(f"bad OOD statistics: {self.name} has {self.means.shape[1]} features in the file, "
                                 f"the network gives {tuple(f.shape[1:])}", "retrain or fine-tune the model to fit new statistics")
        if self.unit:
            f = unit_rows(f)
        mu = torch.from_numpy(self.means.astype(np.float64))
        prec = torch.from_numpy(self.precision.astype(np.float64))
        d = f[:, None, :] - mu[None, :, :]  # (N, K, D)
        m2 = torch.einsum("nkd,de,nke->nk", d, prec, d).clamp_min(0.0)
        return m2.min(dim=1).values.sqrt().numpy()

    def standardised(self, feats: np.ndarray | torch.Tensor) -> np.ndarray:
        return (self.distance(feats) - self.loc) / self.scale


@dataclass
class OodStats:
    """The parts' statistics, the flag threshold and where it came from."""

    parts: list[PartStats]
    threshold: float
    percentile: float = 95.0
    fitted_on: str = ""
    legacy: bool = False  # read from a first-format file: pooled features only
    extra: dict = field(default_factory=dict)

    @property
    def part_names(self) -> list[str]:
        return [p.name for p in self.parts]

    @property
    def means(self) -> np.ndarray:
        """The pooled features' class means (the deepest part's where there is none)."""
        return next((p.means for p in self.parts if p.name == ood_parts.POOLED), self.parts[-1].means)

    def score(self, feats: Features | np.ndarray | torch.Tensor) -> np.ndarray:
        """``ood_score`` of each image; ``feats`` maps part names to (N, D) features
        (a bare array is the pooled features, for single-part statistics)."""
        if not isinstance(feats, Mapping):
            feats = {ood_parts.POOLED: feats}
        return np.mean([p.standardised(feats[p.name]) for p in self.parts], axis=0).astype(np.float32)

    def logits_and_scores(self, network: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
        """One forward pass of ``network`` on ``x``: its logits and the images' scores."""
        logits, feats = ood_parts.logits_and_parts(network, x, self.part_names)
        return logits, self.score(feats)

    def flags(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) > self.threshold

    def tensors(self) -> dict[str, torch.Tensor]:
        """What the model file stores: every number, as tensors (:mod:`core.models.ood_file`)."""
        return ood_file.to_tensors(self.parts, self.threshold, self.percentile)

    def metadata(self) -> dict:
        """What the model file's JSON says about the statistics."""
        return {"score": "mahalanobis" if self.legacy else "mean standardised mahalanobis of parts",
                "parts": self.part_names, "threshold": self.threshold, "percentile": self.percentile,
                "fitted_on": self.fitted_on, **({"features": "pooled, unit length"} if self.legacy else {})}

    def describe(self) -> str:
        k = self.parts[0].means.shape[0]
        what = (f"Mahalanobis distance to {k} class means in {self.parts[0].means.shape[1]} unit-length pooled features "
                "(statistics of an older kind: retrain or fine-tune for the input- and multi-depth score)"
                if self.legacy else
                f"mean standardised Mahalanobis distance to {k} class means over {len(self.parts)} parts "
                f"({', '.join(self.part_names)})")
        return (f"OOD: {what}; flagged above {self.threshold:.3g} ({self.percentile:g}th percentile of "
                f"{self.fitted_on or 'held-out images'})")


def _np(a: np.ndarray | torch.Tensor) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def unit_rows(f: torch.Tensor) -> torch.Tensor:
    """Each feature vector scaled to length 1.  Without it a sparse, dark image of
    another modality gives small activations that sit near every class mean (AUROC
    0.87 vs 1.0 on the test task of tests/test_trust.py)."""
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


def _standardised_residuals(name: str, f: np.ndarray, y: np.ndarray, n_classes: int
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(class means, residuals over their per-feature spread, that spread) of one part."""
    f = np.asarray(f, np.float64)
    if name == ood_parts.POOLED:
        f = unit_rows(torch.from_numpy(f)).numpy()
    means = _means(f, y, n_classes)
    resid = f - means[y]
    sd = resid.std(0)
    sd = np.maximum(sd, max(1e-6, 1e-3 * float(np.median(sd))))  # a dead channel must not divide by zero
    return means, resid / sd, sd


def _gaussian(name: str, f: np.ndarray, y: np.ndarray, n_classes: int) -> PartStats:
    """Class means and the Ledoit–Wolf shared precision of one part.

    Each feature is standardised first (input statistics mix quantiles and log
    spreads; shrinkage towards a multiple of the identity assumes equal scales) and
    the scaling folded back into the precision, so scoring needs no extra numbers.
    With fewer images than features the precision comes from the Woodbury identity
    (:func:`_low_rank`: an N × N inverse instead of a D × D eigendecomposition)."""
    from sklearn.covariance import LedoitWolf

    means, c, sd = _standardised_residuals(name, f, y, n_classes)
    low = _low_rank(c)
    if low is None:
        prec = LedoitWolf(assume_centered=True).fit(c).precision_
    else:
        a, inner = low
        prec = -(c.T @ (inner @ c))
        prec[np.diag_indices_from(prec)] += 1.0
        prec /= a
    return PartStats(name, means.astype(np.float32), (prec / np.outer(sd, sd)).astype(np.float32))


def _fold_distance(name: str, f: np.ndarray, y: np.ndarray, n_classes: int, h: np.ndarray) -> np.ndarray:
    """``PartStats.distance`` of ``h`` under the part fitted on ``(f, y)``, without forming its
    D × D precision where the Woodbury form applies (cross-fitting needs distances only)."""
    means, c, sd = _standardised_residuals(name, f, y, n_classes)
    low = _low_rank(c)
    if low is None:
        return _gaussian(name, f, y, n_classes).distance(h)
    a, inner = low
    hh = np.asarray(h, np.float64)
    if name == ood_parts.POOLED:
        hh = unit_rows(torch.from_numpy(hh)).numpy()
    d = (hh[:, None, :] - means[None, :, :]) / sd  # (M, K, D)
    cd = d @ c.T  # (M, K, N)
    m2 = ((d * d).sum(-1) - ((cd @ inner) * cd).sum(-1)) / a
    return np.sqrt(np.clip(m2, 0.0, None).min(axis=1))




def _as_parts(feats: Features | np.ndarray) -> dict[str, np.ndarray]:
    return {k: _np(v) for k, v in feats.items()} if isinstance(feats, Mapping) else {ood_parts.POOLED: _np(feats)}


def _fit_parts(f: dict[str, np.ndarray], y: np.ndarray, n_classes: int) -> list[PartStats]:
    return [_gaussian(name, v, y, n_classes) for name, v in f.items()]


def fit_stats(features: Features | np.ndarray | None, labels: np.ndarray | None, n_classes: int, held_out: Features | np.ndarray,
              held_labels: np.ndarray | None = None, percentile: float = 95.0, fitted_on: str = "",
              folds: int = 5) -> OodStats:
    """Fit every part on the training ``features`` (part name → (N, D), or one pooled
    (N, D) array) with integer ``labels``; standardise the parts and set the threshold
    on the ``held_out`` in-distribution images.

    With ``held_labels`` the held-out images join the fit too (a few dozen training
    images leave the covariance starved: AUROC 0.80 → 0.99 on the test task), and their
    scores are cross-fitted: each fold of them is scored by Gaussians fitted without
    it, so standardisation and threshold stay those of images the statistics never saw.
    ``features=None`` fits on the held-out images alone, cross-fitted the same way: what a
    run without a validation split does with its training images (in-sample distances in
    hundreds of dimensions run far lower than a new image's, so a threshold on them flags
    most new images; the network's own memory of them is the bias that remains)."""
    h = _as_parts(held_out)
    if features is None:  # no separate training features: the held-out images are cross-fitted on themselves
        f, y = {k: v[:0] for k, v in h.items()}, np.zeros(0, int)
    else:
        f, y = _as_parts(features), np.asarray(labels, int)
    if held_labels is None or len(next(iter(h.values()))) < folds:
        if features is None:  # too few to cross-fit: in-sample, the best there is
            f, y = h, np.asarray(held_labels, int)
        parts = _fit_parts(f, y, n_classes)
        dist = np.stack([p.distance(h[p.name]) for p in parts])
        return _finish(parts, dist, percentile, fitted_on)
    hy = np.asarray(held_labels, int)
    n_h = len(hy)
    fold = np.arange(n_h) % folds
    dist = np.empty((len(f), n_h))
    for j in range(folds):
        rest = fold != j
        fy = np.concatenate([y, hy[rest]])
        for i, k in enumerate(f):
            dist[i, ~rest] = _fold_distance(k, np.concatenate([f[k], h[k][rest]]), fy, n_classes, h[k][~rest])
    parts = _fit_parts({k: np.concatenate([f[k], h[k]]) for k in f}, np.concatenate([y, hy]), n_classes)
    return _finish(parts, dist, percentile, fitted_on)


def _finish(parts: list[PartStats], dist: np.ndarray, percentile: float, fitted_on: str) -> OodStats:
    """Standardise each part by its held-out distances (``dist``: parts × images); set the threshold."""
    if len(parts) > 1:  # one part keeps raw distances: the score of the first format
        for p, d in zip(parts, dist):
            p.loc, p.scale = float(d.mean()), float(max(d.std(), 1e-6))
    score = np.mean([(d - p.loc) / p.scale for p, d in zip(parts, dist)], axis=0)
    return OodStats(parts, float(np.percentile(score, percentile)), percentile, fitted_on)


def stats_from_tensors(t: dict[str, torch.Tensor], meta: dict, feature_dim: int | None, n_classes: int, where: str,
                       network: nn.Module | None = None, in_chans: int | None = None) -> OodStats | None:
    """Rebuild and check the statistics a file carries; ``None`` when it carries none."""
    r = ood_file.read_tensors(t, meta, feature_dim, n_classes, where, network, in_chans)
    if r is None:
        return None
    return OodStats([PartStats(*p) for p in r.parts], r.threshold, r.percentile, r.fitted_on, legacy=r.legacy)


def feature_dim(network: nn.Module) -> int | None:
    """Width of the pooled features the head reads, or ``None`` where it has no such head."""
    from .heads import MLPHead

    head = getattr(network, "head", None)
    return int(head.in_features) if isinstance(head, MLPHead) else None


def supports_ood(network: nn.Module) -> bool:
    """Single networks with a pooled-feature head; ensembles and FCN maps have none to read."""
    return feature_dim(network) is not None and not getattr(network, "is_fcn", False)


def logits_and_pooled(network: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass that returns the logits and the *average*-pooled last feature map.

    Average, whatever the head pools: a max-pooled map keeps only the strongest
    response per channel, and the OOD AUROC of the test task of tests/test_trust.py
    fell from 0.99 (average) to 0.62 (the max the senescence CNN's head reads)."""
    logits, feats = ood_parts.logits_and_parts(network, x, [ood_parts.POOLED])
    return logits, feats[ood_parts.POOLED]


def default_parts(network: nn.Module) -> list[str]:
    return ood_parts.default_parts(network)
