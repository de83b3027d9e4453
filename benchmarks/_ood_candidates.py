"""Candidate OOD scores of bench_trust, side by side on the same trained network.

Every candidate is fitted on the training images' features and, where it needs
held-out data (standardising the parts of a combined score), on fresh
in-distribution "calibration" images; it is then scored on the test images, the
other modality and the held-back class.  Higher = less like the training data.
"""

from __future__ import annotations

import numpy as np
import torch

from napari_cellclass.core.models import ood, ood_parts


def network_input(bundle, images: list[np.ndarray]) -> torch.Tensor:
    """The images as the network sees them in predict (same preprocessing)."""
    from napari_cellclass.core.inference.predict import iter_planes_of, network_inputs

    items = list(iter_planes_of(images, bundle.in_chans, -1))
    return network_inputs(bundle, [it.plane for it in items], [it.value_max for it in items], torch.device("cpu"))


@torch.no_grad()
def extract(bundle, images: list[np.ndarray], parts: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Logits and every part's features of ``images``."""
    net = bundle.network.eval()
    logits, feats = [], {p: [] for p in parts}
    for s in range(0, len(images), 32):
        z, f = ood_parts.logits_and_parts(net, network_input(bundle, images[s:s + 32]), parts)
        logits.append(z.float().numpy())
        for p in parts:
            feats[p].append(f[p].float().numpy())
    return np.concatenate(logits), {p: np.concatenate(v) for p, v in feats.items()}


def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def _knn(train: np.ndarray, k: int = 5):
    t = _unit(train)
    return lambda f: 1.0 - np.sort(_unit(f) @ t.T, axis=1)[:, -k]


def _pca_residual(train: np.ndarray, keep: float = 0.95):
    t = _unit(train)
    mu = t.mean(0)
    _, s, vt = np.linalg.svd(t - mu, full_matrices=False)
    r = int(np.searchsorted(np.cumsum(s ** 2) / np.sum(s ** 2), keep)) + 1
    basis = vt[:r]
    return lambda f: np.linalg.norm((_unit(f) - mu) - ((_unit(f) - mu) @ basis.T) @ basis, axis=1)


def _maha(names: list[str], tr: dict, y: np.ndarray, k: int, cal: dict, combine: str = "mean"):
    stats = ood.fit_stats({n: tr[n] for n in names}, y, k, {n: cal[n] for n in names})

    def score(f: dict) -> np.ndarray:
        z = np.stack([p.standardised(f[p.name]) for p in stats.parts])
        return z.mean(0) if combine == "mean" else z.max(0)
    return score


def _mean_only(feats: dict, stages: list[str]) -> dict:
    """The channel-mean half of each stage's [mean, std] features."""
    return {**feats, **{s + "#mean": feats[s][:, : feats[s].shape[1] // 2] for s in stages}}


def _on(score, part: str | None = None):
    """A (logits, parts) → scores function from one that reads one part (or all of them)."""
    return lambda z, f: score(f if part is None else f[part])


def candidates(tr: tuple, y: np.ndarray, k: int, cal: tuple, groups: dict[str, tuple]) -> dict[str, dict[str, np.ndarray]]:
    """Candidate name → group name → scores.  ``tr``, ``cal`` and each group: (logits, parts)."""
    parts = list(tr[1])
    stages = [p for p in parts if p.startswith(ood_parts.STAGE)]
    f_tr, f_cal = _mean_only(tr[1], stages), _mean_only(cal[1], stages)
    pooled = ood_parts.POOLED
    fns = {
        "msp (1 - max softmax)": lambda z, f: 1 - torch.softmax(torch.from_numpy(z), 1).max(1).values.numpy(),
        "energy (-logsumexp)": lambda z, f: -torch.logsumexp(torch.from_numpy(z), 1).numpy(),
        "knn cosine, pooled (k=5)": _on(_knn(tr[1][pooled]), pooled),
        "pca residual, pooled": _on(_pca_residual(tr[1][pooled]), pooled),
    }
    combos = {
        "maha pooled (previous)": [pooled],
        "maha input statistics": [ood_parts.INPUT],
        "maha stages, channel means": [s + "#mean" for s in stages],
        "maha stages, means+std": stages,
        "maha stages means+std + pooled": [*stages, pooled],
        "maha input + pooled": [ood_parts.INPUT, pooled],
        "maha input + stages + pooled (mean)": parts,
    }
    for name, names in combos.items():
        fns[name] = _on(_maha(names, f_tr, y, k, f_cal))
    fns["maha input + stages + pooled (max)"] = _on(_maha(parts, f_tr, y, k, f_cal, "max"))
    out = {}
    for name, fn in fns.items():
        out[name] = {g: fn(z, _mean_only(f, stages)) for g, (z, f) in groups.items()}
    return out
