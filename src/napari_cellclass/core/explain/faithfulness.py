"""Scores of explanation maps: localisation against masks, faithfulness, sanity.

* pointing game — the map's maximum falls on the object (within ``tolerance`` px);
* mask IoU — the map thresholded at a value chosen on a validation split;
* PxAP (Choe et al. 2020) — average precision of map values over all mask pixels;
* deletion / insertion AUC (Petsiuk et al. 2018) — how fast the class probability
  falls when the most important pixels are removed first (lower is better), or rises
  when they are put into a blurred image first (higher is better);
* randomised-weights sanity check (Adebayo et al. 2018) — maps of a model with
  re-initialised weights must differ from the trained model's (low rank correlation).

Metrics are thin wrappers over numpy / scipy / scikit-learn.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..models.bundle import ModelBundle
from ..errors import CellclassError

THRESHOLDS = np.round(np.arange(0.05, 1.0, 0.05), 2)


def pointing_hit(map2d: np.ndarray, mask: np.ndarray, tolerance: float = 15.0) -> bool:
    """True when the map's maximum lies within ``tolerance`` pixels of the mask."""
    from scipy.ndimage import distance_transform_edt

    mask = np.asarray(mask, bool)
    if not mask.any():
        raise CellclassError("the pointing game needs a non-empty mask")
    y, x = np.unravel_index(int(np.argmax(map2d)), map2d.shape)
    if mask[y, x]:
        return True
    return bool(distance_transform_edt(~mask)[y, x] <= tolerance)


def mask_iou(map2d: np.ndarray, mask: np.ndarray, threshold: float) -> float:
    pred = np.asarray(map2d) >= threshold
    mask = np.asarray(mask, bool)
    union = np.count_nonzero(pred | mask)
    return float(np.count_nonzero(pred & mask) / union) if union else 1.0


def choose_threshold(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                     thresholds: np.ndarray = THRESHOLDS) -> tuple[float, float]:
    """The threshold with the best mean IoU over (map, mask) pairs, and that IoU."""
    if not maps:
        raise CellclassError("no maps to choose a threshold on", "use a larger validation split")
    scores = [float(np.mean([mask_iou(m, k, t) for m, k in zip(maps, masks)])) for t in thresholds]
    best = int(np.argmax(scores))
    return float(thresholds[best]), scores[best]


def pxap(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> float:
    """Pixel average precision over all pixels of all pairs (scikit-learn)."""
    from sklearn.metrics import average_precision_score

    y = np.concatenate([np.asarray(k, bool).ravel() for k in masks])
    s = np.concatenate([np.asarray(m, np.float32).ravel() for m in maps])
    if not y.any():
        raise CellclassError("PxAP needs at least one mask pixel")
    return float(average_precision_score(y, s))


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(image.astype(np.float32), sigma=(0, sigma, sigma))


def deletion_insertion(bundle: ModelBundle, image: np.ndarray, map2d: np.ndarray, class_index: int,
                       steps: int = 16, device: str | torch.device = "cpu") -> tuple[float, float]:
    """(deletion AUC, insertion AUC) of one channel-first image (C, H, W) and its map.

    Deletion sets the top-ranked pixels to 0; insertion starts from a strongly blurred
    copy and puts the original pixels back in map order.  Each curve has ``steps`` + 1
    points (one batched forward pass); the AUC is over the fraction of pixels.
    """
    from ..inference.predict import predict

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[1:] != np.asarray(map2d).shape:
        raise CellclassError(f"image {image.shape} and map {np.asarray(map2d).shape} do not match",
                             "pass the channel-first image the map was computed on")
    order = np.argsort(-np.asarray(map2d, np.float32).ravel(), kind="stable")
    n = order.size
    fractions = np.linspace(0.0, 1.0, steps + 1)
    blurred = _blur(image, max(image.shape[1:]) / 16.0).astype(image.dtype)
    deleted, inserted = [], []
    for f in fractions:
        top = np.zeros(n, bool)
        top[order[: int(round(f * n))]] = True
        top = top.reshape(image.shape[1:])[None]
        deleted.append(np.where(top, np.zeros_like(image), image))
        inserted.append(np.where(top, image, blurred))
    probs = predict(bundle, deleted + inserted, device=device, channel_axis=0, batch_size=steps + 1)[:, class_index]
    trapz = getattr(np, "trapezoid", None) or np.trapz
    return float(trapz(probs[: steps + 1], fractions)), float(trapz(probs[steps + 1:], fractions))


def randomised_copy(bundle: ModelBundle, seed: int = 0) -> ModelBundle:
    """A copy of ``bundle`` whose every layer is re-initialised (the caller's is untouched)."""
    with bundle.lock:
        net = copy.deepcopy(bundle.network)
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for m in net.modules():
            if hasattr(m, "reset_parameters") and callable(m.reset_parameters):
                m.reset_parameters()
            if hasattr(m, "reset_running_stats"):
                m.reset_running_stats()
    finally:
        torch.random.set_rng_state(gen_state)
    return ModelBundle(net, list(bundle.classes), bundle.output, bundle.in_chans, bundle.preprocess, bundle.arch,
                       list(bundle.channel_names), bundle.thresholds, {**bundle.provenance, "randomised": True})


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of two maps (0 for a constant map)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def sanity_check(bundle: ModelBundle, images: Sequence[Any], method: str = "gradcam", targets: Sequence[Any] | None = None,
                 layer: str | None = None, seed: int = 0, device: str | torch.device | None = None,
                 channel_axis: Any = "auto") -> dict[str, Any]:
    """Rank correlation between maps of ``bundle`` and of a randomised copy, per image.

    Maps that barely change (correlation near 1) do not depend on what the model
    learned and fail the check.
    """
    from .engine import explain_batch

    images = list(images)
    targets = list(targets) if targets is not None else ["all"] * len(images)
    kw = dict(method=method, layer=layer, targets=targets, device=device, channel_axis=channel_axis)
    ours = explain_batch(bundle, images, **kw)
    theirs = explain_batch(randomised_copy(bundle, seed), images, **kw)
    corr = [rank_correlation(a, b) for ra, rb in zip(ours, theirs) for a, b in zip(ra.maps, rb.maps)]
    mean = float(np.mean(corr)) if corr else float("nan")
    return {"method": method, "spearman_mean": mean, "spearman": corr, "passes": bool(mean < 0.5)}
