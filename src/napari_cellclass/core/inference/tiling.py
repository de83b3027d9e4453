"""Sliding-window prediction of a large image into a coarse per-class probability map.

Tiles are cut from the source lazily (only the tile's pixels are read), batched
through the network and folded into an accumulator the size of the output map, so
memory does not grow with the image beyond that map.  Per-image normalisation
statistics come from the whole image (a strided sample), never from each tile, so
every tile is normalised the same way.

The map has one cell per ``stride`` source pixels; a cell's probability is the mean
over the tiles that contain the cell's centre.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np
import torch

from ..models.bundle import ModelBundle
from ..device import eval_mode, prepare_network, resolve_device
from ..errors import CellclassError
from ..io.chunk_cache import chunk_cached, chunk_friendly_order
from ..io.images import ChannelAxis, Layout, get_plane, inspect, match_channels
from .predict import ImageLike, resolve_source, run_network
from ..progress import Progress, drain
from .options import RunOptions, run_options
from .levels import map_pick

_STATS_PIXELS = 4_000_000  # sample size for whole-image statistics


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles sit and how map cells relate to source pixels."""

    image_hw: tuple[int, int]
    tile_hw: tuple[int, int]
    stride_hw: tuple[int, int]
    ys: tuple[int, ...]
    xs: tuple[int, ...]

    @property
    def map_hw(self) -> tuple[int, int]:
        return (math.ceil(self.image_hw[0] / self.stride_hw[0]), math.ceil(self.image_hw[1] / self.stride_hw[1]))

    @property
    def n_tiles(self) -> int:
        return len(self.ys) * len(self.xs)

    def cell_centres(self, axis: int) -> np.ndarray:
        """Centre of each (edge-clipped) cell along ``axis``, in source pixels."""
        s, n, size = self.stride_hw[axis], self.map_hw[axis], self.image_hw[axis]
        starts = np.arange(n) * s
        return (starts + np.minimum(starts + s, size)) / 2.0

    def scale_translate(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """Scale and translate that place the map on the source's pixel grid (napari)."""
        sy, sx = self.stride_hw
        cy, cx = self.cell_centres(0)[0], self.cell_centres(1)[0]
        return (float(sy), float(sx)), (float(cy - 0.5), float(cx - 0.5))


def _starts(size: int, tile: int, stride: int) -> tuple[int, ...]:
    if tile >= size:
        return (0,)
    starts = list(range(0, size - tile + 1, stride))
    if starts[-1] != size - tile:
        starts.append(size - tile)  # the last tile is pulled back inside the image
    return tuple(starts)


def tile_grid(image_hw: tuple[int, int], tile: int | tuple[int, int], overlap: float = 0.5) -> TileGrid:
    if not 0.0 <= overlap < 1.0:
        raise CellclassError(f"overlap must be in [0, 1), got {overlap}")
    th, tw = (tile, tile) if isinstance(tile, int) else (int(tile[0]), int(tile[1]))
    if th < 8 or tw < 8:
        raise CellclassError(f"tile size {th}x{tw} is too small", "use tiles of at least 8x8 px")
    h, w = image_hw
    th, tw = min(th, h), min(tw, w)
    sy, sx = max(1, round(th * (1 - overlap))), max(1, round(tw * (1 - overlap)))
    return TileGrid((h, w), (th, tw), (sy, sx), _starts(h, th, sy), _starts(w, tw, sx))


def whole_image_stats(bundle: ModelBundle, data, layout: Layout, frame: int, name: str, channels) -> tuple[torch.Tensor, torch.Tensor] | None:
    norm = bundle.preprocess.normalization
    if not norm.needs_image_stats():
        return None
    step = max(1, math.ceil(math.sqrt(layout.height * layout.width / _STATS_PIXELS)))
    sample = get_plane(data, layout, frame, name, (slice(None, None, step), slice(None, None, step)))
    sample = match_channels(sample, bundle.in_chans, channels, name)
    return norm.image_stats(torch.from_numpy(sample)[None])


def predict_map_steps(
    bundle: ModelBundle,
    image: ImageLike,
    tile: int | tuple[int, int] | None = None,
    overlap: float = 0.5,
    batch_size: int = 32,
    device: str | torch.device = "auto",
    channel_axis: ChannelAxis = "auto",
    channels: list[int] | None = None,
    frame: int = 0,
    amp: bool = True,
    *,
    options: RunOptions | None = None,
) -> Generator[Progress, None, tuple[np.ndarray, TileGrid]]:
    """Generator form of :func:`predict_map`: yields the tiles done after every
    batch and returns ``(map, grid)``; closing it stops between batches."""
    o = run_options(options, device=device, batch_size=batch_size, channel_axis=channel_axis, channels=channels, amp=amp)
    device, batch_size, channel_axis, channels, amp = o.device, o.batch_size, o.channel_axis, o.channel_list, o.amp
    # a pyramid is tiled on one level (see levels.map_pick); place the map with levels.chosen_level
    data, axis, rgb, name = resolve_source(image, 0, channel_axis, map_pick(bundle, o))
    layout, vmax = inspect(data, axis, None if channels else bundle.in_chans, rgb, name)
    grid = tile_grid((layout.height, layout.width), tile if tile is not None else bundle.input_size, overlap)
    dev = resolve_device(device)
    stats = whole_image_stats(bundle, data, layout, frame, name, channels)
    if stats is not None:
        stats = (stats[0].to(dev), stats[1].to(dev))
    k = bundle.num_classes
    acc = np.zeros((k, *grid.map_hw), np.float64)
    count = np.zeros(grid.map_hw, np.int32)
    cy, cx = grid.cell_centres(0), grid.cell_centres(1)
    th, tw = grid.tile_hw
    data = chunk_cached(data, layout.y_axis, layout.x_axis, tile_hw=grid.tile_hw)  # lazy: each chunk read ~once
    origins = chunk_friendly_order([(y, x) for y in grid.ys for x in grid.xs], data, grid.tile_hw)
    with bundle.lock, eval_mode(bundle.network):
        prepare_network(bundle.network, dev)
        for b0 in range(0, len(origins), batch_size):
            batch = origins[b0:b0 + batch_size]
            tiles = np.stack([
                match_channels(get_plane(data, layout, frame, name, (slice(y, y + th), slice(x, x + tw)), native=True), bundle.in_chans, channels, name)
                for y, x in batch
            ])
            t = torch.from_numpy(tiles).to(dev, non_blocking=True)
            vm = torch.full((len(batch),), np.nan if vmax is None else vmax, dtype=torch.float32, device=dev)
            x_in, _ = bundle.preprocess.prepare_batch(t, vm, stats)
            probs = run_network(bundle, x_in, dev, amp)
            for (y, x), p in zip(batch, probs):
                rows = np.nonzero((cy >= y) & (cy < y + th))[0]
                cols = np.nonzero((cx >= x) & (cx < x + tw))[0]
                if rows.size and cols.size:
                    acc[:, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] += p[:, None, None]
                    count[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] += 1
            yield Progress(min(b0 + batch_size, len(origins)), len(origins), stage="tiles")
    if (count == 0).any():  # cannot happen with the grid rules above; guard against silent zeros
        raise CellclassError("internal error: some map cells were not covered by any tile")
    return (acc / count).astype(np.float32), grid


def predict_map(
    bundle: ModelBundle,
    image: ImageLike,
    tile: int | tuple[int, int] | None = None,
    overlap: float = 0.5,
    batch_size: int = 32,
    device: str | torch.device = "auto",
    channel_axis: ChannelAxis = "auto",
    channels: list[int] | None = None,
    frame: int = 0,
    amp: bool = True,
    *,
    options: RunOptions | None = None,
) -> np.ndarray:
    """Per-class probability map (K, H', W') of a large image by sliding window.

    ``tile`` is the window in source pixels (default: the model's input size, so
    tiles are not resized); windows overlap by ``overlap``; one map cell per stride.
    Use :func:`tile_grid` for the cell geometry (e.g. to place the map as a layer).
    A pyramid (multiscale layer, OME-Zarr path, list of arrays) is tiled on the level
    ``options.level`` or of pixel size ``options.pixel_size`` (default: level 0, or the
    model's recorded training pixel size); the map is then in that level's pixels.
    """
    o = run_options(options, device=device, batch_size=batch_size, channel_axis=channel_axis, channels=channels, amp=amp)
    return drain(predict_map_steps(bundle, image, tile, overlap, frame=frame, options=o))[0]
