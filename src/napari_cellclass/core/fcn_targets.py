"""Heat-map targets for FCN training from a fluorescence channel (study 5).

Liimatainen et al. build the target of every present class from the protein
channel: normalise → Gaussian filter → threshold 0.3 → dilate → resize to the
output grid; absent classes get zeros.  Here the mask is made once per image at
the network's input size (so it is augmented together with the image, and flips
or rotations move it with the cells) and reduced to the output grid per batch.
A grid cell is positive when any of its pixels is (max pooling), so small
compartments such as centrosomes survive the 16x reduction.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .data.dataset import Dataset
from .errors import CellclassError
from .images import match_channels
from .preprocess import Normalization, Preprocess

DEFAULTS = {"channel": 0, "sigma": 2.0, "threshold": 0.3, "dilate": 2}


def target_spec(spec: dict[str, Any] | None) -> dict[str, float]:
    spec = {**DEFAULTS, **(spec or {})}
    unknown = set(spec) - set(DEFAULTS)
    if unknown:
        raise CellclassError(f"unknown fcn_target option(s) {sorted(unknown)}", f"known: {sorted(DEFAULTS)}")
    return spec


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian of (N, 1, H, W), reflect-padded."""
    if sigma <= 0:
        return x
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    pad_y, pad_x = min(r, x.shape[-2] - 1), min(r, x.shape[-1] - 1)
    y = F.pad(x, (0, 0, pad_y, pad_y), mode="reflect")
    y = F.conv2d(y, k[r - pad_y: r + pad_y + 1].view(1, 1, -1, 1))
    y = F.pad(y, (pad_x, pad_x, 0, 0), mode="reflect")
    return F.conv2d(y, k[r - pad_x: r + pad_x + 1].view(1, 1, 1, -1))


def channel_mask(channel: torch.Tensor, spec: dict[str, float]) -> torch.Tensor:
    """(N, 1, H, W) raw channel → (N, 1, H, W) float 0/1 mask."""
    flat = channel.flatten(1)
    lo = flat.min(1).values.view(-1, 1, 1, 1)
    hi = flat.max(1).values.view(-1, 1, 1, 1)
    x = (channel - lo) / (hi - lo).clamp_min(1e-6)
    x = gaussian_blur(x, float(spec["sigma"]))
    m = (x >= float(spec["threshold"])).float()
    d = int(spec["dilate"])
    if d > 0:
        m = F.max_pool2d(m, 2 * d + 1, stride=1, padding=d)
    return m


def cached_masks(ds: Dataset, preprocess: Preprocess, in_chans: int, spec: dict[str, float], device: torch.device,
                 stop: Callable[[], bool] | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """``(M, rows)``: (N_store, 1, h, w) masks at the input size, and this data set's rows."""
    store = ds._store
    ch = int(spec["channel"])
    if not 0 <= ch < in_chans:
        raise CellclassError(f"fcn_target channel {ch} does not exist; the model has {in_chans} channels",
                             f"use a channel between 0 and {in_chans - 1}")
    geom_only = Preprocess(preprocess.input_size, preprocess.resize, "bilinear", Normalization("none"))
    key = ("fcn", preprocess, int(in_chans), tuple(sorted(spec.items())), str(device))
    entry = store.tensors.get(key)
    if entry is None:
        h, w = preprocess.input_size
        entry = store.tensors[key] = {"x": torch.zeros((len(store.sources), 1, h, w), device=device),
                                      "done": np.zeros(len(store.sources), bool)}
    rows = ds.indices
    for j in np.unique(rows):
        if entry["done"][j]:
            continue
        if stop is not None and stop():
            from .errors import Cancelled

            raise Cancelled("training")
        plane, _ = store.raw(int(j))
        plane = match_channels(plane, in_chans, None, store.names[j])
        t = torch.from_numpy(np.ascontiguousarray(plane[ch:ch + 1], dtype=np.float32)).to(device)
        resized, _ = geom_only.prepare_batch(t[None])
        entry["x"][j] = channel_mask(resized, spec)[0]
        entry["done"][j] = True
    return entry["x"], rows


def to_grid(mask: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(N, 1, h, w) input-size masks (possibly augmented, so not exactly 0/1) → (N, 1, gh, gw) 0/1."""
    return (F.adaptive_max_pool2d(mask, grid) >= 0.5).to(mask.dtype)


def targets(mask_grid: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The same mask for every present class, zeros for absent ones: (N, K, gh, gw)."""
    return mask_grid * y[:, :, None, None].to(mask_grid.dtype)


def output_grid(network: torch.nn.Module, in_chans: int, input_size: tuple[int, int], device: torch.device) -> tuple[int, int]:
    """The heat-map size the FCN gives for ``input_size`` (one dry forward pass)."""
    from .device import eval_mode

    with torch.no_grad(), eval_mode(network):
        maps = network.forward_maps(torch.zeros((1, in_chans, *input_size), device=device))
    return int(maps.shape[-2]), int(maps.shape[-1])
