"""Heat-map targets for FCN training from a fluorescence channel (study 5).

Liimatainen et al. build the target of every present class from the protein
channel: normalise → Gaussian filter → threshold 0.3 → dilate → resize to the
output grid; absent classes get zeros.  Here the mask is made once per image at
the network's input size (so it is augmented together with the image, and flips
or rotations move it with the cells) and reduced to the output grid per batch.
A grid cell is positive when any of its pixels is (max pooling), so small
compartments such as centrosomes survive the 16x reduction.

Painted pixel labels (``Dataset.has_target_mask``) replace that target for their sample:
each class's painted region, brought to the input size with the image's own resize
geometry, is the target of that class's map.  Samples without a painted mask keep
the fluorescence target (the recipe's ``fcn_target``, or :data:`DEFAULTS` when a
model without one is trained on painted planes).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data.dataset import Dataset
from ..errors import CellclassError
from ..io.images import match_channels
from ..io.preprocess import Normalization, Preprocess

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
    store = ds.store
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
            from ..errors import Cancelled

            raise Cancelled("training")
        plane, _ = store.raw(int(j))
        plane = match_channels(plane, in_chans, None, store.names[j])
        t = torch.from_numpy(np.ascontiguousarray(plane[ch:ch + 1], dtype=np.float32)).to(device)
        resized, _ = geom_only.prepare_batch(t[None])
        entry["x"][j] = channel_mask(resized, spec)[0]
        entry["done"][j] = True
    return entry["x"], rows


def to_grid(mask: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(N, A, h, w) input-size masks (possibly augmented, so not exactly 0/1) → (N, A, gh, gw) 0/1."""
    return (F.adaptive_max_pool2d(mask, grid) >= 0.5).to(mask.dtype)


def targets(mask_grid: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The same mask for every present class, zeros for absent ones: (N, K, gh, gw)."""
    return mask_grid * y[:, :, None, None].to(mask_grid.dtype)


def output_grid(network: torch.nn.Module, in_chans: int, input_size: tuple[int, int], device: torch.device) -> tuple[int, int]:
    """The heat-map size the FCN gives for ``input_size`` (one dry forward pass)."""
    from ..device import eval_mode

    with torch.no_grad(), eval_mode(network):
        maps = network.forward_maps(torch.zeros((1, in_chans, *input_size), device=device))
    return int(maps.shape[-2]), int(maps.shape[-1])



def painted_masks(ds: Dataset, preprocess: Preprocess, classes: list[str], device: torch.device,
                  stop: Callable[[], bool] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(P, slot)``: (N_painted, K, h, w) uint8 painted masks at the input size, planes
    in the order of ``classes`` (the model's), and per store row its index in ``P``
    (-1: not painted).  Only this data set's painted rows are read."""
    n_classes = len(classes)
    cols = [classes.index(c) for c in ds.classes]
    store = ds.store
    h, w = preprocess.input_size
    # "area" averages exactly the source pixels under each input pixel, so "> 0" marks an
    # input pixel painted when any of its source pixels is (nothing spreads past the paint)
    geom_only = Preprocess(preprocess.input_size, preprocess.resize, "area", Normalization("none"))
    slot = torch.full((len(store.sources),), -1, dtype=torch.long)
    rows = [int(j) for j in np.unique(ds.indices) if store.has_target_mask(int(j))]
    out = torch.zeros((len(rows), n_classes, h, w), dtype=torch.uint8, device=device)
    for p, j in enumerate(rows):
        if stop is not None and stop():
            from ..errors import Cancelled

            raise Cancelled("training")
        plane, _ = store.raw(j)
        m = store.mask(j, tuple(plane.shape[-2:]))  # (K_data, H, W), checked against the image
        t = torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32)).to(device)
        resized, _ = geom_only.prepare_batch(t[None])
        out[p, cols] = (resized[0] > 0).to(torch.uint8)
        slot[j] = p
    return out, slot.to(device)


@dataclass
class FcnMasks:
    """What FCN training needs per batch: the per-class target at the input size."""

    fluor: torch.Tensor  # (N_store, 1, h, w) fluorescence masks (see cached_masks)
    painted: torch.Tensor  # (N_painted, K, h, w) uint8 painted masks
    slot: torch.Tensor  # (N_store,) row -> index into painted, -1 where not painted

    def batch(self, rows: torch.Tensor, y: torch.Tensor, device: torch.device) -> torch.Tensor:
        """(B, K, h, w) float targets at the input size for store ``rows`` with labels ``y``:
        the painted planes where a sample has them, else fluorescence mask x present classes."""
        r = rows.to(self.fluor.device)
        out = self.fluor[r].to(device, non_blocking=True) * y[:, :, None, None].to(device, torch.float32)
        s = self.slot[rows.to(self.slot.device)]
        has = s >= 0
        if bool(has.any()):
            out[has.to(device)] = self.painted[s[has]].to(device, torch.float32)
        return out


def loop_masks(ds: Dataset, preprocess: Preprocess, in_chans: int, classes: list[str], spec: dict[str, Any] | None,
               device: torch.device, stop: Callable[[], bool] | None = None) -> FcnMasks | None:
    """:class:`FcnMasks` for training an FCN on ``ds``, or None when it has neither a
    fluorescence target (``spec`` None) nor painted masks (train on image labels)."""
    painted = any(ds.store.has_target_mask(int(j)) for j in ds.indices) if ds.store.mask_sources else False
    if spec is None and not painted:
        return None
    fluor, _ = cached_masks(ds, preprocess, in_chans, target_spec(spec), device, stop)
    p, slot = painted_masks(ds, preprocess, list(classes), device, stop)
    return FcnMasks(fluor, p, slot)
