"""What the OOD score looks at: the network input's intensity statistics and the
feature maps of several depths (Lee et al. 2018), read in the same forward pass as the logits.

* ``input``: per channel, the shape of the intensity histogram (quantiles of the
  image standardised by its own median and inter-quartile range, so exposure and
  camera offset do not count), its raw level and spread, and the distribution of
  local gradients at two scales (how sharp and how fine the texture is).  No
  network is needed, and a different modality differs here first.
* ``stage:<module>``: the channel means and standard deviations of that module's
  output map (one timm ``feature_info`` stage, one ReLU of a plain conv stack).
* ``pooled``: the average-pooled last feature map (the old, single part).

Why these and not energy, kNN or PCA residuals: docs/measurements/trust.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

INPUT = "input"
POOLED = "pooled"
STAGE = "stage:"
#: at most this many stages are modelled (the deepest ones, evenly spaced), and a stage
#: wider than this many channels keeps only its means: the precision matrix grows as D²
MAX_STAGES = 4
MAX_STD_CHANNELS = 512
_QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.75, 0.9, 0.95, 0.99)
_GRAD_QUANTILES = (0.5, 0.9, 0.99)
#: per channel: 8 quantiles, level, log spread, 3 gradient quantiles and mean, 2 coarse ones, their ratio
N_INPUT_FEATURES = 17


def stage_modules(network: nn.Module) -> list[str]:
    """Names of the modules whose output maps are modelled, shallow to deep."""
    backbone = getattr(network, "backbone", None)
    info = getattr(backbone, "feature_info", None)
    names: list[str] = []
    if info:
        try:
            names = ["backbone." + str(f["module"]) for f in info]
        except (KeyError, TypeError):
            names = []
    elif isinstance(getattr(network, "features", None), nn.Sequential):
        names = [f"features.{i}" for i, m in enumerate(network.features) if isinstance(m, nn.ReLU)]
    if len(names) > MAX_STAGES:  # evenly spaced, always ending with the deepest
        step = (len(names) - 1) / (MAX_STAGES - 1)
        names = [names[round(i * step)] for i in range(MAX_STAGES)]
    return names


def _robust_standardise(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, P) values → each row minus its median over its IQR, the median, the IQR."""
    q = torch.quantile(v, torch.tensor([0.25, 0.5, 0.75], dtype=v.dtype, device=v.device), dim=1)
    iqr = (q[2] - q[0]).clamp_min(1e-6)
    return (v - q[1][:, None]) / iqr[:, None], q[1], iqr


def _grad(u: torch.Tensor) -> torch.Tensor:
    """(N, H, W) → (N, P) gradient magnitudes (forward differences)."""
    gy = (u[:, 1:, :-1] - u[:, :-1, :-1])
    gx = (u[:, :-1, 1:] - u[:, :-1, :-1])
    return (gy.square() + gx.square()).sqrt().flatten(1)


@torch.no_grad()
def input_features(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) network input → (N, C * 17) intensity and texture statistics."""
    n, c = x.shape[:2]
    xs = x.detach().float()
    if xs.shape[-1] * xs.shape[-2] > 512 * 512:  # quantiles of a quarter-million values are plenty
        xs = nn.functional.interpolate(xs, size=(512, 512), mode="area")
    qs = torch.tensor(_QUANTILES, device=xs.device)
    gq = torch.tensor(_GRAD_QUANTILES, device=xs.device)
    out = []
    for ch in range(c):
        plane = xs[:, ch]
        u, med, iqr = _robust_standardise(plane.flatten(1))
        u2 = u.view_as(plane)
        g1 = _grad(u2)
        g2 = _grad(nn.functional.avg_pool2d(u2[:, None], 2)[:, 0]) if min(plane.shape[-2:]) >= 4 else g1
        out += [torch.quantile(u, qs, dim=1).T, med[:, None], iqr.log()[:, None],
                torch.quantile(g1, gq, dim=1).T, g1.mean(1, keepdim=True),
                torch.quantile(g2, gq, dim=1).T[:, 1:], (g2.mean(1) / g1.mean(1).clamp_min(1e-6))[:, None]]
    return torch.cat(out, 1).reshape(n, -1)


def _map_stats(t: torch.Tensor) -> torch.Tensor:
    """A feature map (N, C, h, w) or tokens (N, T, C) → channel means and standard deviations."""
    if t.ndim == 4:
        flat = t.float().flatten(2)
    elif t.ndim == 3:
        flat = t.float().transpose(1, 2)
    else:
        return t.float().flatten(1)
    mean = flat.mean(2)
    if flat.shape[1] > MAX_STD_CHANNELS or flat.shape[2] < 2:
        return mean
    return torch.cat([mean, flat.std(2)], 1)


def logits_and_parts(network: nn.Module, x: torch.Tensor, parts: Sequence[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One forward pass: the logits and the features of every part named in ``parts``."""
    grabbed: dict[str, torch.Tensor] = {}
    handles = []
    for name in parts:
        if name.startswith(STAGE):
            module = network.get_submodule(name[len(STAGE):])

            def hook(_m, _inp, out, key=name):
                grabbed[key] = _map_stats(out[0] if isinstance(out, (tuple, list)) else out)
            handles.append(module.register_forward_hook(hook))
    try:
        f = network.forward_features(x)
        logits = network.forward_head(f)
    finally:
        for h in handles:
            h.remove()
    feats: dict[str, torch.Tensor] = {}
    for name in parts:
        if name == INPUT:
            feats[name] = input_features(x)
        elif name == POOLED:
            feats[name] = (f.mean(dim=(-2, -1)) if f.ndim == 4 else f.mean(dim=1) if f.ndim == 3 else f).float()
        else:
            feats[name] = grabbed[name]
    return logits, feats


def default_parts(network: nn.Module) -> list[str]:
    """What a newly fitted model models: the input, every stage, the pooled features."""
    return [INPUT, *(STAGE + s for s in stage_modules(network)), POOLED]
