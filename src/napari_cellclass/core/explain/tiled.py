"""Tiled (high-resolution) explanations: the whole image decides the target and the
channel weights, tiles give the detail, blended without seams."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
import torch

from ..models.heads import probabilities
from ..inference.tiling import whole_image_stats, tile_grid
from .compute import CHANNEL_WEIGHT_METHODS, channel_weights, weighted_maps
from .result import ExplainResult
from .target_layers import members
from .targets import resolve_targets
from .passes import Source, make_result, network_views, read_plane, resolution, target_rounds


# --------------------------------------------------------------------------- tiled
def _hann(n: int) -> np.ndarray:
    """A Hann window sampled at pixel centres, never exactly 0 (an image edge covered by one tile keeps it)."""
    i = np.arange(n, dtype=np.float32)
    return (np.sin(np.pi * (i + 0.5) / n) ** 2 + 1e-3).astype(np.float32)


def _whole_pass(bundle, s: Source, spec, method, layers, channels, frame, dev):
    """The whole image as Classify sees it: (probabilities, targets, per member the channel
    weights of each layer or None).  Tiles are explained for the whole image's prediction and,
    for the channel-weight methods, with the whole image's weights, so every tile is on one
    scale and the map has no seams at the tile step."""
    x, _ = bundle.preprocess.prepare(torch.from_numpy(read_plane(s, bundle, channels, frame)).to(dev), s.vmax)
    x = x[None]
    with torch.no_grad():
        probs = probabilities(bundle.network(x), bundle.output).cpu().numpy()[0]
    targets = resolve_targets(bundle, spec, probs)
    if method not in CHANNEL_WEIGHT_METHODS:
        return probs, targets, None
    rounds = target_rounds([targets], dev)
    weights = [channel_weights(net, bundle.output, x, lambda _logits: rounds, method, layers)[2] for net in members(bundle.network)]
    return probs, targets, [[w[:, 0] for w in per_layer] for per_layer in weights]


def _tile_views(bundle, x, method, layers, targets, weights) -> list[tuple[str, torch.Tensor]]:
    if weights is None:
        return network_views(bundle, x, [None] * x.shape[0], method, layers, [targets] * x.shape[0])[2]
    return [v for net, w in zip(members(bundle.network), weights) for v in weighted_maps(net, x, w, layers)]




#: tiles sampled to measure where in its input the network puts evidence, whatever the content
BIAS_SAMPLE = 32


def tiled_work(n_tiles: int, method: str) -> int:
    """Tile passes of one tiled explanation: the bias sample, then every tile."""
    return n_tiles + (min(BIAS_SAMPLE, n_tiles) if n_tiles >= 8 and method != "fcn" else 0)


def _position_bias(origins, batch_size, tile_maps) -> Generator[int, None, list[torch.Tensor] | None]:
    """Per view, the mean map over up to BIAS_SAMPLE evenly spread tiles, scaled to mean 1 and
    floored at 0.2, or None with fewer than 8 tiles.  A CNN's maps are brighter at the centre of
    its input than at its zero-padded edges whatever the content; every tile carries that same
    profile, which the blend turns into a lattice at the tile step.  Dividing each tile's map by
    the profile leaves the content (measured on the built-in model, tile 160, overlap 0.5: share of the
    map's variance explained by its phase at the tile step 0.148 -> 0.010 on skimage's cell, 0.078 -> 0.015 on noise)."""
    if len(origins) < 8:
        return None
    pick = [origins[i] for i in np.linspace(0, len(origins) - 1, min(BIAS_SAMPLE, len(origins))).round().astype(int)]
    sums: list[torch.Tensor] = []
    for b0 in range(0, len(pick), batch_size):
        _, _, maps = tile_maps(pick[b0:b0 + batch_size])
        part = [m.sum(dim=(0, 1)) for m in maps]  # over tiles and targets: one (th, tw) profile per view
        sums = part if not sums else [a + b for a, b in zip(sums, part)]
        yield len(pick[b0:b0 + batch_size])
    out = []
    for p in sums:
        p = p / p.mean().clamp_min(1e-12)
        out.append(p.clamp_min(0.2))
    return out


def explain_tiled(bundle, s: Source, spec, method, layers, channels, frame, dev, tile, overlap,
                   batch_size) -> Generator[int, None, ExplainResult]:
    """Yields the number of tiles just processed; returns the result."""
    grid = tile_grid((s.layout.height, s.layout.width), tile, overlap)
    probs, targets, weights = _whole_pass(bundle, s, spec, method, layers, channels, frame, dev)
    stats = whole_image_stats(bundle, s.data, s.layout, frame, s.name, channels)
    if stats is not None:
        stats = (stats[0].to(dev), stats[1].to(dev))
    th, tw = grid.tile_hw
    origins = [(y, x) for y in grid.ys for x in grid.xs]
    window = torch.from_numpy(np.outer(_hann(th), _hann(tw)))

    kept: dict[tuple[int, int], tuple[torch.Tensor, ...]] = {}  # the bias sample's maps, blended without a second pass
    meta: dict[str, Any] = {}

    def tile_maps(batch, keep: bool = False):
        tiles = np.stack([read_plane(s, bundle, channels, frame, (slice(y, y + th), slice(x, x + tw))) for y, x in batch])
        vm = torch.full((len(batch),), np.nan if s.vmax is None else s.vmax, dtype=torch.float32, device=dev)
        x, geom = bundle.preprocess.prepare_batch(torch.from_numpy(tiles).to(dev), vm, stats)
        views = _tile_views(bundle, x, method, layers, targets, weights)
        meta.setdefault("geom", geom)
        meta.setdefault("views", views)
        maps = [torch.stack([geom.to_source(m[:len(targets), j]).cpu() for j in range(len(batch))]) for _, m in views]
        if keep:
            kept.update(zip(batch, zip(*maps)))
        return geom, views, maps

    # FCN maps are the model's probabilities: they stay as they are
    profile = None if method == "fcn" else (
        yield from _position_bias(origins, batch_size, lambda b: tile_maps(b, keep=True)))
    canvases: list[torch.Tensor] = []
    weight = torch.zeros(s.layout.height, s.layout.width)
    names: list[str] = []
    res, feat = (1.0, 1.0), None
    for b0 in range(0, len(origins), batch_size):
        batch = origins[b0:b0 + batch_size]
        todo = [o for o in batch if o not in kept]
        fresh = dict(zip(todo, zip(*tile_maps(todo)[2]))) if todo else {}
        per_tile = [kept.pop(o) if o in kept else fresh[o] for o in batch]
        if not canvases:
            views = meta["views"]
            names = [n for n, _ in views]
            canvases = [torch.zeros(len(targets), s.layout.height, s.layout.width) for _ in views]
            feat = tuple(int(v) for v in views[0][1].shape[-2:])
            finest = min((tuple(int(v) for v in m.shape[-2:]) for _, m in views), key=lambda g: -g[0] * g[1])
            res = resolution(meta["geom"], finest)
        for (y, x0), tile_views in zip(batch, per_tile):
            for v, (c, m) in enumerate(zip(canvases, tile_views)):
                c[:, y:y + th, x0:x0 + tw] += (m if profile is None else m / profile[v]) * window
            weight[y:y + th, x0:x0 + tw] += window
        yield len(batch)
    src = [(c / weight.clamp_min(1e-12)).numpy() for c in canvases]
    info = {"tile_hw": list(grid.tile_hw), "stride_hw": list(grid.stride_hw), "n_tiles": grid.n_tiles,
            "overlap": overlap, "probabilities": "the whole image's (as Classify)",
            "target": "the whole image's prediction" if spec is None else "as requested",
            "weights": "the whole image's channel weights for every tile" if weights is not None else "per tile",
            "blend": "Hann-weighted mean of overlapping tiles, normalised once over the whole map"}
    return make_result(bundle, s, frame, method, targets, src, names, probs, feat, res, info)


