"""explain / explain_batch / explain_steps: images in, maps on the images' own grid out.

Flow per batch: canonical planes → the model's preprocessing (the geometry of the
resize / letterbox / crop is kept) → raw maps on the feature grid of every member
and layer ("views") → back onto the source grid with ``Geometry.to_source`` →
each view divided by its maximum over the whole image → mean over views.  Tiled
mode cuts the image with :func:`core.tiling.tile_grid` (75 % overlap by default),
blends overlapping tiles with a Hann window *before* normalising once over the whole
map, so tiles share one scale and a tile's own edge pattern does not repeat as a
lattice; the target is the whole image's prediction, the class Classify reports.

The network is used under ``bundle.lock`` in eval mode; its train/eval flags and
device are restored afterwards and hooks never outlive a batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..models.bundle import ModelBundle
from ..device import eval_mode, resolve_device
from ..errors import CellclassError
from ..io.geometry import Geometry
from ..io.images import ChannelAxis, Layout, get_plane, inspect, match_channels
from ..models.heads import probabilities
from ..inference.options import RunOptions, run_options
from ..inference.predict import ImageLike, resolve_source, as_sources
from ..inference.tiling import whole_image_stats, tile_grid
from .compute import network_maps
from .result import ExplainResult, Progress
from .target_layers import members
from .targets import Target, layer_list, method_name, resolve_targets
from ..progress import drain

# --------------------------------------------------------------------------- sources
@dataclass
class _Source:
    index: int
    name: str
    data: Any
    layout: Layout
    vmax: float | None
    channels: list[int]


def _open(src: ImageLike, i: int, bundle: ModelBundle, channel_axis: ChannelAxis, channels: list[int] | None,
          frame: int) -> _Source:
    data, axis, rgb, name = resolve_source(src, i, channel_axis)
    layout, vmax = inspect(data, axis, None if channels else bundle.in_chans, rgb, name)
    if not 0 <= frame < layout.n_frames:
        raise CellclassError(f"{name}: frame {frame} does not exist (it has {layout.n_frames})", "choose an existing frame")
    c = layout.n_channels
    if channels is not None:
        used = [int(k) % c if -c <= int(k) < c else int(k) for k in channels]
    elif c == 4 and bundle.in_chans == 3:
        used = [0, 1, 2]
    else:
        used = list(range(c))
    return _Source(i, name, data, layout, vmax, used)


def _plane(s: _Source, bundle: ModelBundle, channels: list[int] | None, frame: int,
           region: tuple[slice, slice] | None = None) -> np.ndarray:
    plane = get_plane(s.data, s.layout, frame, s.name, region, native=True)
    return match_channels(plane, bundle.in_chans, channels, s.name)


# --------------------------------------------------------------------------- model use
def _same_device(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


@contextlib.contextmanager
def using_model(bundle: ModelBundle, device: str | torch.device | None) -> Iterator[torch.device]:
    """Lock, eval mode, optional move to ``device``; everything restored afterwards."""
    with bundle.lock:
        home = bundle.device
        dev = home if device is None else resolve_device(device)
        moved = not _same_device(dev, home)
        with eval_mode(bundle.network):
            try:
                if moved:
                    bundle.network.to(dev)
                yield dev
            finally:
                if moved:
                    bundle.network.to(home)
                if dev.type == "cuda" or moved:
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()


def _rounds(target_lists: list[list[int]], device: torch.device) -> torch.Tensor:
    r = max(len(t) for t in target_lists)
    out = torch.full((r, len(target_lists)), -1, dtype=torch.long, device=device)
    for i, t in enumerate(target_lists):
        out[: len(t), i] = torch.tensor(t, dtype=torch.long, device=device)
    return out


def _views(bundle: ModelBundle, x: torch.Tensor, specs: list[Target], method: str, layers: list[str | None],
           fixed: list[list[int]] | None = None) -> tuple[np.ndarray, list[list[int]], list[tuple[str, torch.Tensor]]]:
    """Probabilities (N, K), targets per image, and (layer, maps (R, N, h, w)) per member x layer."""
    nets = members(bundle.network)
    state: dict[str, Any] = {}
    if len(nets) > 1 or fixed is not None:
        if len(nets) > 1:
            with torch.no_grad():
                state["probs"] = probabilities(bundle.network(x), bundle.output).cpu().numpy()
        state["targets"] = fixed if fixed is not None else [
            resolve_targets(bundle, s, p) for s, p in zip(specs, state["probs"])]

    def choose(logits: torch.Tensor) -> torch.Tensor:
        if "targets" not in state:
            state["probs"] = probabilities(logits, bundle.output).cpu().numpy()
            state["targets"] = [resolve_targets(bundle, s, p) for s, p in zip(specs, state["probs"])]
        return _rounds(state["targets"], x.device)

    views: list[tuple[str, torch.Tensor]] = []
    for net in nets:
        logits, _, vs = network_maps(net, bundle.output, x, choose, method, layers)
        if "probs" not in state:
            state["probs"] = probabilities(logits, bundle.output).cpu().numpy()
        views.extend(vs)
    return state["probs"], state["targets"], views


def _resolution(geom: Geometry, grid: tuple[int, int]) -> tuple[float, float]:
    """Source pixels per feature-map cell."""
    sy0, sx0, sy1, sx1 = geom.src_box
    dy0, dx0, dy1, dx1 = geom.dst_box
    oh, ow = geom.out_hw
    return ((sy1 - sy0) / max((dy1 - dy0) * grid[0] / oh, 1e-9), (sx1 - sx0) / max((dx1 - dx0) * grid[1] / ow, 1e-9))


def _finish(views: list[np.ndarray], method: str) -> np.ndarray:
    """Each view (T, H, W) divided by its max over the whole image (FCN: as is); mean of views."""
    out = []
    for v in views:
        if method != "fcn":
            peak = v.reshape(v.shape[0], -1).max(axis=1)
            v = v / np.where(peak > 0, peak, 1.0)[:, None, None]
        out.append(v)
    return np.clip(np.mean(out, axis=0), 0.0, 1.0).astype(np.float32)


def _normalisation(method: str, n_views: int) -> str:
    if method == "fcn":
        return "none (the model's per-class probabilities)" + (", mean over members" if n_views > 1 else "")
    text = "each map divided by its maximum over the whole image"
    return text + (f"; mean of {n_views} views (ensemble members x layers), each normalised so" if n_views > 1 else "")


def _result(bundle, s, frame, method, targets, views_src, layer_names, probs, grid, res, tiles=None) -> ExplainResult:
    return ExplainResult(
        maps=_finish(views_src, method), class_names=[bundle.classes[k] for k in targets], method=method,
        layer=None if method == "fcn" else layer_names[0], effective_resolution=res, channels=list(s.channels),
        probabilities=np.asarray(probs, np.float32), layers=[] if method == "fcn" else list(dict.fromkeys(layer_names)),
        feature_grid=grid, tiles=tiles, members=len(members(bundle.network)),
        normalisation=_normalisation(method, len(views_src)), name=s.name, frame=frame,
    )


# --------------------------------------------------------------------------- whole images
def _explain_whole(bundle, batch: list[_Source], specs, method, layers, channels, frame, dev, fixed=None) -> list[ExplainResult]:
    xs, geoms = [], []
    for s in batch:
        t = torch.from_numpy(_plane(s, bundle, channels, frame)).to(dev)
        x, g = bundle.preprocess.prepare(t, s.vmax)
        xs.append(x)
        geoms.append(g)
    probs, targets, views = _views(bundle, torch.stack(xs), specs, method, layers, fixed)
    out = []
    for i, s in enumerate(batch):
        n = len(targets[i])
        src = [geoms[i].to_source(m[:n, i]).cpu().numpy() for _, m in views]
        grid = tuple(int(v) for v in views[0][1].shape[-2:])
        finest = min((tuple(int(v) for v in m.shape[-2:]) for _, m in views), key=lambda g: -g[0] * g[1])
        out.append(_result(bundle, s, frame, method, targets[i], src, [n_ for n_, _ in views], probs[i], grid,
                           _resolution(geoms[i], finest)))
    return out


# --------------------------------------------------------------------------- tiled
#: tiled explain overlap: at 0.5 each pixel is ruled by one tile and Grad-CAM's
#: within-tile pattern (dim tile edges) shows as a lattice; 0.75 averages 4 tiles per axis
TILED_OVERLAP = 0.75


def _hann(n: int) -> np.ndarray:
    """Hann window: tile edges (zero-padding artefacts) weigh ~0; the floor keeps the
    image border, which one tile alone covers, defined."""
    i = np.arange(n, dtype=np.float64)
    return (np.sin(np.pi * (i + 0.5) / n) ** 2 + 1e-3).astype(np.float32)


def _whole_probs(bundle, s: _Source, channels, frame, dev) -> np.ndarray:
    """The whole image's probabilities: the same forward Classify makes, so the tiled
    map explains the class the user was shown."""
    t = torch.from_numpy(_plane(s, bundle, channels, frame)).to(dev)
    x, _ = bundle.preprocess.prepare(t, s.vmax)
    with torch.no_grad():
        return probabilities(bundle.network(x[None]), bundle.output).cpu().numpy()[0]


def tiled_count(hw: tuple[int, int], tile: int | tuple[int, int], overlap: float) -> int:
    """Tiles :func:`_explain_tiled` runs on an image of ``hw`` (with its mirrored margin)."""
    th, tw = tile_grid(hw, tile, overlap).tile_hw
    py, px = (th // 2 if th < hw[0] else 0), (tw // 2 if tw < hw[1] else 0)
    return tile_grid((hw[0] + 2 * py, hw[1] + 2 * px), (th, tw), overlap).n_tiles


def _explain_tiled(bundle, s: _Source, spec, method, layers, channels, frame, dev, tile, overlap,
                   batch_size) -> Generator[int, None, ExplainResult]:
    """Yields the number of tiles just processed; returns the result."""
    h, w = s.layout.height, s.layout.width
    grid = tile_grid((h, w), tile, overlap)
    th, tw = grid.tile_hw
    # the border gets half a tile of mirrored margin, so border pixels sit inside tiles
    # (not on their dim edges) and are blended from as many tiles as the interior
    py, px = (th // 2 if th < h else 0), (tw // 2 if tw < w else 0)
    padded = tile_grid((h + 2 * py, w + 2 * px), (th, tw), overlap)
    stats = whole_image_stats(bundle, s.data, s.layout, frame, s.name, channels)
    if stats is not None:
        stats = (stats[0].to(dev), stats[1].to(dev))
    origins = [(y, x) for y in padded.ys for x in padded.xs]
    window = torch.from_numpy(np.outer(_hann(th), _hann(tw)))

    def cut(y: int, x: int) -> np.ndarray:
        y0, x0 = y - py, x - px
        r = (slice(max(0, y0), min(h, y0 + th)), slice(max(0, x0), min(w, x0 + tw)))
        pads = ((0, 0), (max(0, -y0), max(0, y0 + th - h)), (max(0, -x0), max(0, x0 + tw - w)))
        return np.pad(_plane(s, bundle, channels, frame, r), pads, mode="symmetric")

    def inputs(batch):
        tiles = np.stack([cut(y, x) for y, x in batch])
        vm = torch.full((len(batch),), np.nan if s.vmax is None else s.vmax, dtype=torch.float32, device=dev)
        return bundle.preprocess.prepare_batch(torch.from_numpy(tiles).to(dev), vm, stats)

    whole = _whole_probs(bundle, s, channels, frame, dev)
    targets = resolve_targets(bundle, spec, whole)
    canvases: list[torch.Tensor] = []
    weight = torch.zeros(h + 2 * py, w + 2 * px)
    names: list[str] = []
    res, feat = (1.0, 1.0), None
    for b0 in range(0, len(origins), batch_size):
        batch = origins[b0:b0 + batch_size]
        x, geom = inputs(batch)
        _, _, views = _views(bundle, x, [None] * len(batch), method, layers, [targets] * len(batch))
        if not canvases:
            names = [n for n, _ in views]
            canvases = [torch.zeros(len(targets), h + 2 * py, w + 2 * px) for _ in views]
            feat = tuple(int(v) for v in views[0][1].shape[-2:])
            finest = min((tuple(int(v) for v in m.shape[-2:]) for _, m in views), key=lambda g: -g[0] * g[1])
            res = _resolution(geom, finest)
        for j, (y, x0) in enumerate(batch):
            for c, (_, m) in zip(canvases, views):
                c[:, y:y + th, x0:x0 + tw] += geom.to_source(m[:, j]).cpu() * window
            weight[y:y + th, x0:x0 + tw] += window
        yield len(batch)
    src = [(c / weight)[:, py:py + h, px:px + w].numpy() for c in canvases]
    tiles = {"tile_hw": list(grid.tile_hw), "stride_hw": list(padded.stride_hw), "n_tiles": padded.n_tiles,
             "margin_hw": [py, px],
             "overlap": overlap, "probabilities": "whole image (target and reported)",
             "blend": "Hann-weighted mean of overlapping tiles, normalised once over the whole map"}
    return _result(bundle, s, frame, method, targets, src, names, whole, feat, res, tiles)


# --------------------------------------------------------------------------- public API
def explain_steps(
    bundle: ModelBundle,
    sources: ImageLike | Iterable[ImageLike],
    method: str = "gradcam",
    target: Target = None,
    layer: str | Sequence[str] | None = None,
    tile: int | tuple[int, int] | None = None,
    *,
    device: str | torch.device | None = None,
    channel_axis: ChannelAxis = "auto",
    channels: list[int] | None = None,
    frame: int = 0,
    overlap: float = TILED_OVERLAP,
    batch_size: int = 16,
    targets: Sequence[Target] | None = None,
    options: RunOptions | None = None,
) -> Generator[Progress, None, list[ExplainResult]]:
    """Generator form of :func:`explain_batch`: yields :class:`Progress` after every
    batch (units: images, or tiles in tiled mode) and returns one result per source.
    Closing it stops between batches; the lock, hooks and model state are released.
    ``options`` replaces ``device``, ``batch_size``, ``channel_axis`` and ``channels``
    (maps are computed in float32: ``amp`` does not apply)."""
    if options is not None:
        o = run_options(options)
        device, batch_size, channel_axis, channels = o.device, o.batch_size, o.channel_axis, o.channel_list
    method = method_name(method)
    layers = layer_list(layer)
    if batch_size < 1:
        raise CellclassError(f"batch size must be at least 1, got {batch_size}")
    srcs = [_open(src, i, bundle, channel_axis, channels, frame) for i, src in enumerate(as_sources(sources))]
    if not srcs:
        raise CellclassError("no images to explain", "pass at least one image")
    specs = list(targets) if targets is not None else [target] * len(srcs)
    if len(specs) != len(srcs):
        raise CellclassError(f"{len(specs)} targets for {len(srcs)} images", "give one target per image")
    results: list[ExplainResult] = []
    with using_model(bundle, device) as dev:
        if tile is None:
            total = len(srcs)
            yield Progress(0, total)
            for b0 in range(0, total, batch_size):
                batch = srcs[b0:b0 + batch_size]
                results.extend(_explain_whole(bundle, batch, specs[b0:b0 + batch_size], method, layers, channels, frame, dev))
                yield Progress(len(results), total)
            return results
        grids = [tiled_count((s.layout.height, s.layout.width), tile, overlap) for s in srcs]
        total = sum(grids)
        done = 0
        yield Progress(0, total)
        for s, sp in zip(srcs, specs):
            steps = _explain_tiled(bundle, s, sp, method, layers, channels, frame, dev, tile, overlap, batch_size)
            with contextlib.closing(steps):
                while True:
                    try:
                        done += next(steps)
                    except StopIteration as stop:
                        results.append(stop.value)
                        break
                    yield Progress(done, total)
    return results


def _run(steps: Generator[Progress, None, list[ExplainResult]]) -> list[ExplainResult]:
    with contextlib.closing(steps):
        return drain(steps)


def explain(
    bundle: ModelBundle,
    image: ImageLike,
    method: str = "gradcam",
    target: Target = None,
    layer: str | Sequence[str] | None = None,
    tile: int | tuple[int, int] | None = None,
    *,
    device: str | torch.device | None = None,
    channel_axis: ChannelAxis = "auto",
    channels: list[int] | None = None,
    frame: int = 0,
    overlap: float = TILED_OVERLAP,
    options: RunOptions | None = None,
) -> ExplainResult:
    """Explanation maps of one image (frame ``frame`` of a stack) on its own pixel grid.

    ``method``: gradcam | gradcam++ | layercam | hirescam | cam | fcn.  ``target``:
    None (the predicted class; every present class of a multi-label model), a class
    name or index, a list of them, or ``"all"``.  ``layer``: a module name (see
    ``target_layers.layer_names``), several (a list or 'a,b': maps fused), or None
    for the automatic last spatial stage.  ``tile``: explain in tiles of that many
    source pixels (sliding window, ``overlap``) for a high-resolution map.
    ``device``: None keeps the model where it is.  ``options``: a RunOptions in place of
    ``device``, ``channel_axis`` and ``channels``.
    """
    return _run(explain_steps(bundle, [image], method, target, layer, tile, device=device, channel_axis=channel_axis,
                              channels=channels, frame=frame, overlap=overlap, options=options))[0]


def explain_batch(
    bundle: ModelBundle,
    images: Iterable[ImageLike],
    method: str = "gradcam",
    target: Target = None,
    layer: str | Sequence[str] | None = None,
    tile: int | tuple[int, int] | None = None,
    *,
    targets: Sequence[Target] | None = None,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    channel_axis: ChannelAxis = "auto",
    channels: list[int] | None = None,
    frame: int = 0,
    overlap: float = TILED_OVERLAP,
    options: RunOptions | None = None,
) -> list[ExplainResult]:
    """:func:`explain` for many images, ``batch_size`` per forward/backward pass.

    ``targets`` gives one target per image (e.g. each image's true classes), instead
    of the one ``target`` for all.
    """
    return _run(explain_steps(bundle, images, method, target, layer, tile, device=device, channel_axis=channel_axis,
                              channels=channels, frame=frame, overlap=overlap, batch_size=batch_size, targets=targets,
                              options=options))
