"""Large map layers as multiscale layers: a pyramid of block means of the map.

A Grad-CAM or probability map of a whole slide can be as large as the slide's level;
napari draws a single-resolution layer from the whole array (and uploads it as a
texture), so a map over 4096 px on a side is written as a multiscale layer instead.
Its level 0 is the map itself, placed exactly as before (the scale and translate of
the level it was computed on); each coarser level is the 2 x 2 block mean of the one
above, computed on the 2-D map before it is broadcast over the layer's other axes,
so the pyramid costs a third of the map's memory and never the frame or channel
axes'.  napari places coarser levels by the ratio of their shapes to level 0's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LARGE_SIDE = 4096  # px on a side above which a map layer is multiscale
SMALLEST_SIDE = 512  # the pyramid stops once a level is this small


def block_mean(m: np.ndarray) -> np.ndarray:
    """The 2 x 2 block mean of a 2-D map; an odd last row/column is averaged with
    itself (edge padding), so the level covers the whole map."""
    h, w = m.shape
    m = np.pad(m, ((0, h % 2), (0, w % 2)), mode="edge")
    return m.reshape(m.shape[0] // 2, 2, m.shape[1] // 2, 2).mean(axis=(1, 3), dtype=np.float32)


def map_levels(m: np.ndarray, large: int | None = None, smallest: int | None = None) -> list[np.ndarray]:
    """``[m]`` for a map of at most ``large`` px on a side, else ``m`` and its block
    means down to ``smallest`` px on the longer side (defaults: the module's)."""
    large = LARGE_SIDE if large is None else large
    smallest = SMALLEST_SIDE if smallest is None else smallest
    m = np.asarray(m, dtype=np.float32)
    if m.ndim != 2:
        raise ValueError(f"a map must be 2-D, got shape {m.shape}")
    levels = [m]
    if max(m.shape) <= large:
        return levels
    while max(levels[-1].shape) > smallest:
        levels.append(block_mean(levels[-1]))
    return levels


def multiscale_data(placed: np.ndarray, m: np.ndarray, y_axis: int, x_axis: int,
                    large: int | None = None, smallest: int | None = None) -> np.ndarray | list[np.ndarray]:
    """``placed`` (the map ``m`` put on the layer's axes, see ``place_map``) as is when
    small, else as a list of levels shaped like it: what a multiscale layer takes."""
    levels = map_levels(m, large, smallest)
    if len(levels) == 1:
        return placed
    out: list[np.ndarray] = [placed]
    for lv in levels[1:]:
        shape = _shape_for(placed.shape, lv.shape, y_axis, x_axis)
        ones = [lv.shape[0] if d == y_axis else lv.shape[1] if d == x_axis else 1 for d in range(placed.ndim)]
        out.append(np.broadcast_to(lv.reshape(ones), shape))
    return out


def _shape_for(shape: Sequence[int], hw: tuple[int, int], y_axis: int, x_axis: int) -> tuple[int, ...]:
    return tuple(hw[0] if d == y_axis else hw[1] if d == x_axis else int(s) for d, s in enumerate(shape))
