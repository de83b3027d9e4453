"""Maps over their image as an RGB picture (numpy only: no matplotlib, no OpenCV)."""

from __future__ import annotations

import numpy as np

# matplotlib's "inferno" sampled at 9 points (perceptually uniform, the viewer's map colours)
_INFERNO = np.array([
    (0, 0, 4), (31, 12, 72), (85, 15, 109), (136, 34, 106), (186, 54, 85),
    (227, 89, 51), (249, 140, 10), (249, 201, 50), (252, 255, 164)], np.float32) / 255.0


def colormap(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (any shape) → RGB float32 (..., 3) with the inferno colours."""
    v = np.clip(np.nan_to_num(np.asarray(values, np.float32)), 0.0, 1.0)
    pos = np.linspace(0.0, 1.0, len(_INFERNO))
    return np.stack([np.interp(v, pos, _INFERNO[:, c]) for c in range(3)], axis=-1).astype(np.float32)


def display_rgb(plane: np.ndarray) -> np.ndarray:
    """A (C, H, W) image as RGB float32 (H, W, 3) in [0, 1]: the first three channels as
    red/green/blue (one channel: grey), each stretched between its 1st and 99.8th percentile."""
    plane = np.asarray(plane, np.float32)
    chans = plane[:3] if plane.shape[0] >= 3 else plane[:1].repeat(3, axis=0)
    out = np.empty_like(chans)
    for i, c in enumerate(chans):
        lo, hi = np.percentile(c, [1.0, 99.8])
        out[i] = np.clip((c - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)
    return np.moveaxis(out, 0, -1)


def overlay(plane: np.ndarray, maps: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """uint8 RGB (H, K*W, 3): one panel per map, the map blended over the image where it is high."""
    base = display_rgb(plane)
    panels = []
    maps = np.asarray(maps, np.float32)
    for m in maps if maps.ndim == 3 else maps[None]:
        a = (alpha * np.clip(m, 0.0, 1.0))[..., None]
        panels.append((1.0 - a) * base + a * colormap(m))
    return (np.concatenate(panels, axis=1) * 255.0 + 0.5).astype(np.uint8)
