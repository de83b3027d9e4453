"""Resize policies (squash, letterbox, centre crop) and their exact inverse.

The network sees a fixed-size input; a heat map computed on that input must land
back on the pixels of the *source* image it explains.  A :class:`Geometry` records
which box of the source became which box of the network input, so
:meth:`Geometry.to_source` undoes any policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from ..errors import ArchitectureError

ResizePolicy = Literal["squash", "letterbox", "crop"]
Interpolation = Literal["bilinear", "bicubic", "nearest", "area"]
RESIZE_POLICIES: tuple[str, ...] = ("squash", "letterbox", "crop")
INTERPOLATIONS: tuple[str, ...] = ("bilinear", "bicubic", "nearest", "area")

Box = tuple[int, int, int, int]  # y0, x0, y1, x1 (end exclusive)


@dataclass(frozen=True)
class Geometry:
    """Where the visible part of the source lands in the network input."""

    src_hw: tuple[int, int]
    out_hw: tuple[int, int]
    src_box: Box  # region of the source the network sees
    dst_box: Box  # where that region sits in the network input (the rest is padding)

    def to_source(self, maps: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """Resample maps on (a multiple of) the network-input grid onto the source grid.

        ``maps`` is (K, h, w) on any grid proportional to the network input (a 7x7
        feature map of a 224x224 input is fine).  Source pixels the network never saw
        (centre crop) get ``fill``.
        """
        k = maps.shape[0]
        out_h, out_w = self.out_hw
        grid = maps[None].float()
        if grid.shape[-2:] != (out_h, out_w):
            grid = F.interpolate(grid, size=(out_h, out_w), mode="bilinear", align_corners=False)
        y0, x0, y1, x1 = self.dst_box
        content = grid[..., y0:y1, x0:x1]
        sy0, sx0, sy1, sx1 = self.src_box
        content = F.interpolate(content, size=(sy1 - sy0, sx1 - sx0), mode="bilinear", align_corners=False)
        if (sy0, sx0, sy1, sx1) == (0, 0, *self.src_hw):
            return content[0]
        canvas = torch.full((1, k, *self.src_hw), float(fill), dtype=content.dtype, device=content.device)
        canvas[..., sy0:sy1, sx0:sx1] = content
        return canvas[0]


def plan(src_hw: tuple[int, int], out_hw: tuple[int, int], policy: str) -> Geometry:
    """Compute the geometry of one resize without touching pixels."""
    h, w = int(src_hw[0]), int(src_hw[1])
    oh, ow = int(out_hw[0]), int(out_hw[1])
    if policy == "squash":
        return Geometry((h, w), (oh, ow), (0, 0, h, w), (0, 0, oh, ow))
    if policy == "letterbox":
        scale = min(oh / h, ow / w)
        ch, cw = max(1, round(h * scale)), max(1, round(w * scale))
        y0, x0 = (oh - ch) // 2, (ow - cw) // 2
        return Geometry((h, w), (oh, ow), (0, 0, h, w), (y0, x0, y0 + ch, x0 + cw))
    if policy == "crop":
        # largest centred box of the output's aspect ratio
        scale = max(oh / h, ow / w)
        ch, cw = min(h, round(oh / scale)), min(w, round(ow / scale))
        y0, x0 = (h - ch) // 2, (w - cw) // 2
        return Geometry((h, w), (oh, ow), (y0, x0, y0 + ch, x0 + cw), (0, 0, oh, ow))
    raise ArchitectureError(f"unknown resize policy {policy!r}", f"use one of {', '.join(RESIZE_POLICIES)}")


def resample(x: torch.Tensor, size: tuple[int, int], interpolation: str) -> torch.Tensor:
    """Resize a (N, C, H, W) tensor; anti-aliased when shrinking so fine texture survives."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if interpolation not in INTERPOLATIONS:
        raise ArchitectureError(f"unknown interpolation {interpolation!r}", f"use one of {', '.join(INTERPOLATIONS)}")
    if interpolation == "nearest":
        return F.interpolate(x, size=size, mode="nearest-exact")
    if interpolation == "area":
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode=interpolation, align_corners=False, antialias=True)
