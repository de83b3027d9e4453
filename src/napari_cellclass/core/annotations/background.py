"""Empty background among tiles: what "what to label next" leaves out before ranking.

A model is often most uncertain on empty background (no cell to classify), so the
most uncertain tiles of a sparse image were blank ones.  A tile counts as background
when its intensity hardly varies compared with the plane's textured tiles: its
standard deviation is under ``FRACTION`` of the ``PERCENTILE``-th percentile of all
tile standard deviations of the plane.  A plane whose tiles are all alike (all
cells, or all blank) keeps every tile.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FRACTION = 0.25
PERCENTILE = 90


def tile_spread(tile: np.ndarray, channel_axis: int | None = 0) -> float:
    """Standard deviation of the tile's intensity (channels averaged)."""
    a = np.asarray(tile, dtype=np.float64)
    if channel_axis is not None and a.ndim == 3:
        a = a.mean(axis=channel_axis)
    finite = a[np.isfinite(a)]
    return float(finite.std()) if finite.size else 0.0


def background_tiles(tiles: Sequence[np.ndarray], channel_axis: int | None = 0) -> list[bool]:
    """True for each tile of one plane that is empty background (see the module)."""
    spreads = np.array([tile_spread(t, channel_axis) for t in tiles], dtype=np.float64)
    if spreads.size < 2:
        return [False] * len(spreads)
    textured = float(np.percentile(spreads, PERCENTILE))
    if textured <= 0:
        return [False] * len(spreads)
    return [bool(s < FRACTION * textured) for s in spreads]
