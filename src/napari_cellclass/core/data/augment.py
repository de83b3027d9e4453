"""Batched tensor augmentations, as the studies name them (:class:`Augment`).

Everything works on a whole (N, C, H, W) batch on whatever device it lives on: the
flips and 90° turns are index operations, and rotation, shift, zoom and shear are
one affine matrix per image applied by a single ``affine_grid``/``grid_sample``
call.  Random draws come from a CPU ``torch.Generator`` (tiny tensors, then moved),
so a seed gives the same augmentations on a CPU and a GPU.

Images arrive already normalised (augmenting after preprocessing lets the cached
network-ready tensors be reused every epoch); ``constant`` fill is therefore 0, the
neutral value of every normalisation, as for letterbox padding. ``aux`` (e.g. FCN
target masks) gets the same geometry, zero fill and no intensity change.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import CellclassError


@dataclass(frozen=True)
class Augment:
    """Augmentations as the studies name them (applied on tensors, CPU or GPU)."""

    hflip: bool = False
    vflip: bool = False
    rot90: bool = False
    rotate_deg: float = 0.0
    shift: float = 0.0  # fraction of width/height
    width_shift_only: bool = False
    zoom: float = 0.0  # ± fraction
    shear_deg: float = 0.0
    fill: str = "constant"  # 'nearest' | 'constant' (zeros), as Keras' fill_mode
    intensity_jitter: float = 0.0  # ± fraction per channel


_PADDING = {"constant": "zeros", "nearest": "border", "reflect": "reflection"}


def is_identity(aug: Augment) -> bool:
    return not (aug.hflip or aug.vflip or aug.rot90 or aug.rotate_deg or aug.shift or aug.zoom
                or aug.shear_deg or aug.intensity_jitter)


def _uniform(n: int, r: float, gen: torch.Generator) -> torch.Tensor:
    return (torch.rand(n, generator=gen, dtype=torch.float64) * 2.0 - 1.0) * r


def _coin(n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen) < 0.5


def _affine_thetas(aug: Augment, n: int, h: int, w: int, gen: torch.Generator) -> torch.Tensor | None:
    """(N, 2, 3) sampling matrices in affine_grid's normalised coordinates, or None."""
    if not (aug.rotate_deg or aug.shift or aug.zoom or aug.shear_deg):
        return None
    ang = torch.deg2rad(_uniform(n, aug.rotate_deg, gen))
    shear = torch.deg2rad(_uniform(n, aug.shear_deg, gen))
    zoom = 1.0 + _uniform(n, aug.zoom, gen)
    tx = _uniform(n, aug.shift, gen)
    ty = torch.zeros(n, dtype=torch.float64) if aug.width_shift_only else _uniform(n, aug.shift, gen)
    cos, sin = torch.cos(ang), torch.sin(ang)
    # pixel-space linear map (rotation · shear · zoom), so angles stay angles on non-square images
    a = cos * zoom
    b = (cos * torch.tan(shear) - sin) * zoom
    c = sin * zoom
    d = (sin * torch.tan(shear) + cos) * zoom
    sx, sy = w / 2.0, h / 2.0  # normalised → pixel scale
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    theta[:, 0, 0], theta[:, 0, 1] = a, b * sy / sx
    theta[:, 1, 0], theta[:, 1, 1] = c * sx / sy, d
    theta[:, 0, 2], theta[:, 1, 2] = 2.0 * tx, 2.0 * ty  # a shift of f·width is 2f in [-1, 1] coordinates
    return theta


def draw_turns(aug: Augment, n: int, h: int, w: int, gen: torch.Generator
               ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """The flip / quarter-turn draws of one batch, in the order :func:`augment_batch` makes them:
    (horizontal flip mask, vertical flip mask, quarter turns), None where the option is off.
    Public so a feature cache (``training.feature_cache``) can replay the same draws."""
    hm = _coin(n, gen) if aug.hflip else None
    vm = _coin(n, gen) if aug.vflip else None
    k = None
    if aug.rot90:
        # quarter turns keep the shape only on square images; otherwise half turns only
        k = torch.randint(0, 4, (n,), generator=gen) if h == w else 2 * torch.randint(0, 2, (n,), generator=gen)
    return hm, vm, k


def augment_batch(x: torch.Tensor, aug: Augment, gen: torch.Generator,
                  aux: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Randomly transform each image of ``x`` (N, C, H, W); shape, dtype, device kept.

    Returns ``(x, aux)`` with ``aux`` (N, A, H, W) transformed geometrically alike.
    """
    if aug.fill not in _PADDING:
        raise CellclassError(f"unknown augmentation fill {aug.fill!r}", f"use one of {', '.join(_PADDING)}")
    if x.ndim != 4:
        raise CellclassError(f"augment_batch expects (N, C, H, W), got shape {tuple(x.shape)}")
    if is_identity(aug) or x.shape[0] == 0:
        return x, aux
    n, c, h, w = x.shape
    dev = x.device
    both = x if aux is None else torch.cat([x, aux.to(x.dtype)], dim=1)
    hm, vm, k = draw_turns(aug, n, h, w, gen)
    if hm is not None:
        both = torch.where(hm.to(dev).view(-1, 1, 1, 1), both.flip(-1), both)
    if vm is not None:
        both = torch.where(vm.to(dev).view(-1, 1, 1, 1), both.flip(-2), both)
    if k is not None:
        out = both.clone()
        for q in (1, 2, 3):
            sel = (k == q).nonzero().flatten()
            if sel.numel():
                sel = sel.to(dev)
                out[sel] = torch.rot90(both[sel], q, dims=(-2, -1))
        both = out
    theta = _affine_thetas(aug, n, h, w, gen)
    if theta is not None:
        grid = F.affine_grid(theta.to(dev, torch.float32), [n, both.shape[1], h, w], align_corners=False)
        work = both if both.dtype in (torch.float32, torch.float64) else both.float()
        img = F.grid_sample(work[:, :c], grid.to(work.dtype), mode="bilinear", padding_mode=_PADDING[aug.fill],
                            align_corners=False)
        if aux is not None:
            extra = F.grid_sample(work[:, c:], grid.to(work.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)
            img = torch.cat([img, extra], dim=1)
        both = img.to(both.dtype)
    x_out = both[:, :c]
    if aug.intensity_jitter:
        gain = 1.0 + _uniform(n * c, aug.intensity_jitter, gen).view(n, c, 1, 1)
        x_out = x_out * gain.to(dev, x_out.dtype)
    return x_out.contiguous(), (None if aux is None else both[:, c:].contiguous())


def make_generator(seed: int) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    return g


__all__ = ["augment_batch", "draw_turns", "is_identity", "make_generator"]
