"""Read a lazy (zarr, dask) array through a bounded LRU cache of its chunks.

Tiles of a sliding window overlap each other and rarely line up with the store's
chunks: read one by one, a 64-px tile of a store chunked 512 x 512 decompresses
the whole chunk, and the next 63 tiles in that chunk do it again.  Through
:class:`ChunkCache` each chunk is read once while it is in use; tiles are visited in
:func:`chunk_friendly_order` so the chunks in use fit the cache's byte budget, which
keeps memory flat however large the image is.

Only the y and x axes are cut into chunks here; the other axes (channels, a frame)
are read as each call asks, and are part of the cache key.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

DEFAULT_BUDGET = 256 * 2 ** 20  # bytes of chunks held at once


def chunk_edges(data: Any, axis: int) -> np.ndarray | None:
    """Where ``data``'s chunks start along ``axis`` (and its end), or None when it has
    no chunks (numpy, memory maps)."""
    chunks = getattr(data, "chunks", None)
    if not chunks or len(chunks) != len(data.shape):
        return None
    c, n = chunks[axis], int(data.shape[axis])
    if isinstance(c, (tuple, list)):  # dask: the size of every block
        return np.concatenate([[0], np.cumsum([int(v) for v in c])]).astype(np.int64)
    return np.append(np.arange(0, n, max(1, int(c))), n).astype(np.int64)  # zarr: one size


class ChunkCache:
    """``data`` (y axis ``y_axis``, x axis ``x_axis``) read chunk by chunk, the last
    ``budget`` bytes of chunks kept.  ``reads`` counts the chunks read from ``data``."""

    def __init__(self, data: Any, y_axis: int, x_axis: int, budget: int = DEFAULT_BUDGET) -> None:
        ys, xs = chunk_edges(data, y_axis), chunk_edges(data, x_axis)
        if ys is None or xs is None:
            raise ValueError("a ChunkCache needs an array with chunks (zarr, dask)")
        self.data, self.y_axis, self.x_axis, self.budget = data, y_axis, x_axis, int(budget)
        self.ys, self.xs = ys, xs
        self.shape, self.dtype, self.ndim = tuple(data.shape), data.dtype, len(data.shape)
        self.chunks = data.chunks
        self.reads = 0
        self.band_px: int | None = None  # set by plan(): the width of the column bands tiles run in
        self._held: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._bytes = 0

    @property
    def chunk_hw(self) -> tuple[int, int]:
        """The largest chunk's (height, width)."""
        return int(np.diff(self.ys).max()), int(np.diff(self.xs).max())

    def chunk_bytes(self) -> int:
        """Bytes of the largest chunk over all the other axes (a bound for any call)."""
        rest = math.prod(int(s) for d, s in enumerate(self.shape) if d not in (self.y_axis, self.x_axis))
        return math.prod(self.chunk_hw) * rest * np.dtype(self.dtype).itemsize

    def plan(self, tile_hw: tuple[int, int]) -> None:
        """Size the cache for tiles of ``tile_hw`` visited by :func:`chunk_friendly_order`:
        the chunk rows one tile row touches, across one band (plus the column a tile
        straddles into), so chunk rows behind the tiles are evicted and memory stays
        flat instead of filling the whole budget."""
        ch, cw = self.chunk_hw
        rows = -(-(int(tile_hw[0]) - 1) // ch) + 1  # chunk rows a tile of this height can span
        n_cols = len(self.xs) - 1
        band_cols = min(n_cols, max(1, self.budget // (self.chunk_bytes() * rows)))
        self.band_px = max(band_cols * cw, int(tile_hw[1]))
        self.budget = min(self.budget, rows * min(n_cols, band_cols + 1) * self.chunk_bytes() + 2 * self.chunk_bytes())

    def __getitem__(self, index: Any) -> Any:
        index = index if isinstance(index, tuple) else (index,)
        if any(i is Ellipsis or i is None for i in index) or len(index) > self.ndim:
            return self.data[index]
        index = index + (slice(None),) * (self.ndim - len(index))
        y, x = index[self.y_axis], index[self.x_axis]
        plain = all(isinstance(i, slice) and i.step in (None, 1) for i in (y, x))
        rest_ok = all(isinstance(i, (int, np.integer)) or (isinstance(i, slice) and i == slice(None))
                      for d, i in enumerate(index) if d not in (self.y_axis, self.x_axis))
        if not (plain and rest_ok):  # strided samples, fancy indices: straight to the source
            return self.data[index]
        (y0, y1, _), (x0, x1, _) = y.indices(self.shape[self.y_axis]), x.indices(self.shape[self.x_axis])
        if y1 <= y0 or x1 <= x0 or (y1 - y0) * (x1 - x0) * np.dtype(self.dtype).itemsize > self.budget // 2:
            return self.data[index]  # empty, or too large to be worth holding: read as asked
        rest = tuple(int(i) if not isinstance(i, slice) else None for d, i in enumerate(index)
                     if d not in (self.y_axis, self.x_axis))
        # where y and x sit in what data[index] returns (integer indices drop their axes)
        kept = [d for d, i in enumerate(index) if isinstance(i, slice)]
        ay, ax = kept.index(self.y_axis), kept.index(self.x_axis)
        cy = range(int(np.searchsorted(self.ys, y0, "right")) - 1, int(np.searchsorted(self.ys, y1, "left")))
        cx = range(int(np.searchsorted(self.xs, x0, "right")) - 1, int(np.searchsorted(self.xs, x1, "left")))
        rows = []
        for r in cy:
            pieces = []
            for c in cx:
                chunk = self._chunk(index, rest, r, c)
                cut = [slice(None)] * chunk.ndim
                cut[ay] = slice(max(y0, self.ys[r]) - self.ys[r], min(y1, self.ys[r + 1]) - self.ys[r])
                cut[ax] = slice(max(x0, self.xs[c]) - self.xs[c], min(x1, self.xs[c + 1]) - self.xs[c])
                pieces.append(chunk[tuple(cut)])
            rows.append(pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=ax))
        return rows[0] if len(rows) == 1 else np.concatenate(rows, axis=ay)

    def _chunk(self, index: tuple, rest: tuple, r: int, c: int) -> np.ndarray:
        key = (rest, r, c)
        held = self._held.get(key)
        if held is not None:
            self._held.move_to_end(key)
            return held
        whole = list(index)
        whole[self.y_axis] = slice(int(self.ys[r]), int(self.ys[r + 1]))
        whole[self.x_axis] = slice(int(self.xs[c]), int(self.xs[c + 1]))
        chunk = np.asarray(self.data[tuple(whole)])
        self.reads += 1
        self._held[key] = chunk
        self._bytes += chunk.nbytes
        while self._bytes > self.budget and len(self._held) > 1:
            _, old = self._held.popitem(last=False)
            self._bytes -= old.nbytes
        return chunk


def chunk_cached(data: Any, y_axis: int, x_axis: int, budget: int = DEFAULT_BUDGET,
                 tile_hw: tuple[int, int] | None = None) -> Any:
    """``data`` through a :class:`ChunkCache` when it is chunked and a few of its chunks
    fit ``budget``; else ``data`` itself (numpy, or chunks too large to hold).
    ``tile_hw``: the cache is sized for those tiles (:meth:`ChunkCache.plan`)."""
    if isinstance(data, (np.ndarray, ChunkCache)) or chunk_edges(data, y_axis) is None or chunk_edges(data, x_axis) is None:
        return data
    cache = ChunkCache(data, y_axis, x_axis, budget)
    if cache.chunk_bytes() * 4 > budget:
        return data
    if tile_hw is not None:
        cache.plan(tile_hw)
    return cache


def chunk_friendly_order(origins: Sequence[tuple[int, int]], data: Any, tile_hw: tuple[int, int]) -> list[tuple[int, int]]:
    """Tile origins (y, x) in an order whose chunks in use fit ``data``'s cache: row by
    row within vertical bands as wide as the budget allows (the whole width when it
    fits), so a chunk row is finished before it is evicted.  Any other ``data``: as given."""
    if not isinstance(data, ChunkCache):
        return list(origins)
    if data.band_px is None:
        data.plan(tile_hw)
    band_px = data.band_px
    return sorted(origins, key=lambda o: (o[1] // band_px, o[0], o[1]))
