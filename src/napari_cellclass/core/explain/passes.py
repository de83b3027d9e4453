"""The building blocks of one explanation: open a source, run the network's maps on a
prepared batch, put the maps back on the source grid and into an ExplainResult."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..models.bundle import ModelBundle
from ..device import eval_mode, resolve_device
from ..errors import CellclassError
from ..io.geometry import Geometry
from ..io.chunk_cache import chunk_cached
from ..io.images import ChannelAxis, Layout, get_plane, inspect, match_channels
from ..models.heads import probabilities
from ..io.multiscale import LevelPick
from ..inference.predict import ImageLike, resolve_source
from .compute import network_maps
from .result import ExplainResult
from .target_layers import members
from .targets import Target, resolve_targets


# --------------------------------------------------------------------------- sources
@dataclass
class Source:
    index: int
    name: str
    data: Any
    layout: Layout
    vmax: float | None
    channels: list[int]


def open_source(src: ImageLike, i: int, bundle: ModelBundle, channel_axis: ChannelAxis, channels: list[int] | None,
                frame: int, pick: LevelPick | None = None) -> Source:
    data, axis, rgb, name = resolve_source(src, i, channel_axis, pick)
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
    # a lazy array's tiles (tiled explanations) share chunks: read each once
    return Source(i, name, chunk_cached(data, layout.y_axis, layout.x_axis), layout, vmax, used)


def read_plane(s: Source, bundle: ModelBundle, channels: list[int] | None, frame: int,
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


def target_rounds(target_lists: list[list[int]], device: torch.device) -> torch.Tensor:
    r = max(len(t) for t in target_lists)
    out = torch.full((r, len(target_lists)), -1, dtype=torch.long, device=device)
    for i, t in enumerate(target_lists):
        out[: len(t), i] = torch.tensor(t, dtype=torch.long, device=device)
    return out


def network_views(bundle: ModelBundle, x: torch.Tensor, specs: list[Target], method: str, layers: list[str | None],
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
        return target_rounds(state["targets"], x.device)

    views: list[tuple[str, torch.Tensor]] = []
    for net in nets:
        logits, _, vs = network_maps(net, bundle.output, x, choose, method, layers)
        if "probs" not in state:
            state["probs"] = probabilities(logits, bundle.output).cpu().numpy()
        views.extend(vs)
    return state["probs"], state["targets"], views


def resolution(geom: Geometry, grid: tuple[int, int]) -> tuple[float, float]:
    """Source pixels per feature-map cell."""
    sy0, sx0, sy1, sx1 = geom.src_box
    dy0, dx0, dy1, dx1 = geom.dst_box
    oh, ow = geom.out_hw
    return ((sy1 - sy0) / max((dy1 - dy0) * grid[0] / oh, 1e-9), (sx1 - sx0) / max((dx1 - dx0) * grid[1] / ow, 1e-9))


def finish_maps(views: list[np.ndarray], method: str) -> np.ndarray:
    """Each view (T, H, W) divided by its max over the whole image (FCN: as is); mean of views."""
    out = []
    for v in views:
        if method != "fcn":
            peak = v.reshape(v.shape[0], -1).max(axis=1)
            v = v / np.where(peak > 0, peak, 1.0)[:, None, None]
        out.append(v)
    return np.clip(np.mean(out, axis=0), 0.0, 1.0).astype(np.float32)


def normalisation_note(method: str, n_views: int) -> str:
    if method == "fcn":
        return "none (the model's per-class probabilities)" + (", mean over members" if n_views > 1 else "")
    text = "each map divided by its maximum over the whole image"
    return text + (f"; mean of {n_views} views (ensemble members x layers), each normalised so" if n_views > 1 else "")


def make_result(bundle, s, frame, method, targets, views_src, layer_names, probs, grid, res, tiles=None) -> ExplainResult:
    return ExplainResult(
        maps=finish_maps(views_src, method), class_names=[bundle.classes[k] for k in targets], method=method,
        layer=None if method == "fcn" else layer_names[0], effective_resolution=res, channels=list(s.channels),
        probabilities=np.asarray(probs, np.float32), layers=[] if method == "fcn" else list(dict.fromkeys(layer_names)),
        feature_grid=grid, tiles=tiles, members=len(members(bundle.network)),
        normalisation=normalisation_note(method, len(views_src)), name=s.name, frame=frame,
    )


# --------------------------------------------------------------------------- whole images
def explain_whole(bundle, batch: list[Source], specs, method, layers, channels, frame, dev, fixed=None) -> list[ExplainResult]:
    xs, geoms = [], []
    for s in batch:
        t = torch.from_numpy(read_plane(s, bundle, channels, frame)).to(dev)
        x, g = bundle.preprocess.prepare(t, s.vmax)
        xs.append(x)
        geoms.append(g)
    probs, targets, views = network_views(bundle, torch.stack(xs), specs, method, layers, fixed)
    out = []
    for i, s in enumerate(batch):
        n = len(targets[i])
        src = [geoms[i].to_source(m[:n, i]).cpu().numpy() for _, m in views]
        grid = tuple(int(v) for v in views[0][1].shape[-2:])
        finest = min((tuple(int(v) for v in m.shape[-2:]) for _, m in views), key=lambda g: -g[0] * g[1])
        out.append(make_result(bundle, s, frame, method, targets[i], src, [n_ for n_, _ in views], probs[i], grid,
                           resolution(geoms[i], finest)))
    return out


