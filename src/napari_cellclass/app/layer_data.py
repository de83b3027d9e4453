"""Core results → napari layer data, as pure functions (no Qt, no napari import).

Everything here takes plain values (arrays, :class:`~.core.images.Layout`, a
:class:`SourceInfo` captured from a layer on the main thread) and returns napari
``LayerDataTuple``s ``(data, kwargs, "image")`` or plain dicts, so it is tested
without a viewer and reused by every dock.

Placement rule: a map computed on the image plane of frame ``t`` of a source layer
gets the source's ``scale``/``translate``, composed with the map's own cell geometry
(``map pixel i`` sits at ``source pixel i * s + t``), and it keeps the source's
other axes: a stack axis of length 1 moved to frame ``t`` (so the map is shown only
on the frame it explains) and, for multichannel layers with a channel slider, the
channel axis broadcast so the map shows on every channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from napari.layers import Layer
    from ..core.io.images import Layout
    from ..core.explain.result import ExplainResult
    from ..core.inference.tiling import TileGrid

SEP = " · "
META_KEY = "cellclass"
CAM_COLORMAP = "inferno"
PROBABILITY_COLORMAP = "magma"
MAP_OPACITY = 0.5
EXPLAIN_BLENDING = "translucent"

LayerDataTuple = tuple[Any, dict[str, Any], str]


@dataclass(frozen=True)
class SourceInfo:
    """What the layer functions need to know about a source image layer."""

    name: str  # base name, without a prediction shown in it
    shape: tuple[int, ...]  # data shape (RGB axis included)
    rgb: bool
    scale: tuple[float, ...]  # one per layer dimension (RGB axis excluded)
    translate: tuple[float, ...]

    @property
    def ndim(self) -> int:
        return len(self.scale)


@dataclass
class LayerSource:
    """An image for ``core``: has ``.data`` (and no ``.shape``), so core's readers take
    it like a napari layer without this module touching napari objects off-thread."""

    data: Any
    name: str
    rgb: bool | None = None
    meta: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- names
#: how methods are called in layer names and menus
METHOD_TITLES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "layercam": "LayerCAM",
                 "hirescam": "HiResCAM", "cam": "CAM", "fcn": "FCN"}


# Names lead with what tells layers apart (map kind and class, or the channel), the
# image last: the layer list cuts long names, and "cells · Grad-CAM · round · SRS"
# and "cells · SRS" looked alike there.  Each layer's metadata has a "title" in words.
def map_name(image: str, method: str, class_name: str, channel: str | None = None) -> str:
    """``Grad-CAM round · image``; on one channel ``SRS: Grad-CAM round · image`` (beside
    the channel's own layer ``SRS · image``)."""
    head = f"{METHOD_TITLES.get(method, method)} {class_name}"
    return f"{channel + ': ' if channel else ''}{head}{SEP}{image}"


def map_title(image: str, method: str, class_name: str, channel: str | None = None) -> str:
    where = f" on channel {channel}" if channel else ""
    return f"{METHOD_TITLES.get(method, method)} map of class '{class_name}' for image '{image}'{where}"


def probability_map_name(image: str, class_name: str) -> str:
    return f"p({class_name}){SEP}{image}"


def channel_layer_name(image: str, channel: str) -> str:
    return f"{channel}{SEP}{image}"


def predicted_name(base: str, label: str, confidence: float) -> str:
    """The layer name that shows a prediction, e.g. ``cell · healthy (93%)``."""
    return f"{base}{SEP}{label or 'no class'} ({confidence:.0%})"


def base_name(name: str, metadata: dict[str, Any]) -> str:
    """The name a layer had before a prediction was shown in it.  A name the user
    changed since is taken as the new base."""
    meta = metadata.get(META_KEY) or {}
    if meta.get("shown_name") == name and meta.get("base_name"):
        return str(meta["base_name"])
    return name


def is_derived(metadata: dict[str, Any]) -> bool:
    """True for layers napari-cellclass made from another layer (maps, channel views)."""
    return bool((metadata.get(META_KEY) or {}).get("source"))


def source_info(layer: Layer) -> SourceInfo:
    """Capture the placement of a napari Image layer (call on the main thread)."""
    return SourceInfo(
        name=base_name(layer.name, layer.metadata),
        shape=tuple(int(s) for s in layer.data.shape),
        rgb=bool(getattr(layer, "rgb", False)),
        scale=tuple(float(s) for s in layer.scale),
        translate=tuple(float(t) for t in layer.translate),
    )


def frame_at(frame_axis: int | None, n_frames: int, data_point: Sequence[float] | None) -> int:
    """The stack frame under napari's dims slider, from ``layer.world_to_data(dims.point)``."""
    if frame_axis is None or data_point is None or frame_axis >= len(data_point):
        return 0
    return int(np.clip(round(float(data_point[frame_axis])), 0, max(0, n_frames - 1)))


def frame_of(layout: Layout, data_point: Sequence[float] | None) -> int:
    return frame_at(layout.frame_axis, layout.n_frames, data_point)


# --------------------------------------------------------------------------- placement
def place_map(
    map2d: np.ndarray,
    src: SourceInfo,
    layout: Layout,
    frame: int = 0,
    map_scale: Sequence[float] | None = None,
    map_translate: Sequence[float] | None = None,
) -> tuple[np.ndarray, tuple[float, ...], tuple[float, ...]]:
    """Data, scale and translate that put a (h, w) map on frame ``frame`` of ``src``.

    ``map_scale``/``map_translate`` give the map's cells in source pixels
    (``TileGrid.scale_translate()``); by default the map covers the image plane
    exactly with equal cells (a map of the image's own size gets (1, 1), (0, 0)).
    """
    m = np.asarray(map2d, dtype=np.float32)
    if m.ndim != 2:
        raise ValueError(f"a map must be 2-D, got shape {m.shape}")
    h, w = m.shape
    if map_scale is None:
        map_scale = (layout.height / h, layout.width / w)
    if map_translate is None:
        map_translate = ((map_scale[0] - 1) / 2, (map_scale[1] - 1) / 2)
    if len(src.scale) <= max(layout.y_axis, layout.x_axis):
        raise ValueError(f"source {src.name!r} has {src.ndim} dimensions; the layout {layout.describe()} needs more")
    shape: list[int] = []
    scale = list(src.scale)
    translate = list(src.translate)
    for d in range(src.ndim):
        if d == layout.y_axis:
            shape.append(h)
            scale[d] = src.scale[d] * map_scale[0]
            translate[d] = src.translate[d] + src.scale[d] * map_translate[0]
        elif d == layout.x_axis:
            shape.append(w)
            scale[d] = src.scale[d] * map_scale[1]
            translate[d] = src.translate[d] + src.scale[d] * map_translate[1]
        elif d == layout.frame_axis:
            shape.append(1)
            translate[d] = src.translate[d] + frame * src.scale[d]
        elif d == layout.channel_axis:
            shape.append(layout.n_channels)
        else:  # an axis the layout does not know (cannot happen for layouts of this layer)
            shape.append(1)
    expanded = m.reshape([h if d == layout.y_axis else w if d == layout.x_axis else 1 for d in range(src.ndim)])
    data = expanded if tuple(expanded.shape) == tuple(shape) else np.broadcast_to(expanded, shape)
    return data, tuple(scale), tuple(translate)


def heatmap_layer(
    map2d: np.ndarray,
    name: str,
    src: SourceInfo,
    layout: Layout,
    frame: int = 0,
    *,
    colormap: str = CAM_COLORMAP,
    opacity: float = MAP_OPACITY,
    map_scale: Sequence[float] | None = None,
    map_translate: Sequence[float] | None = None,
    metadata: dict[str, Any] | None = None,
    blending: str = "additive",
    visible: bool = True,
) -> LayerDataTuple:
    """One map in [0, 1] as a perceptual-colormap image layer on ``src``."""
    m = np.clip(np.nan_to_num(np.asarray(map2d, dtype=np.float32)), 0.0, 1.0)
    data, scale, translate = place_map(m, src, layout, frame, map_scale, map_translate)
    from .map_pyramid import multiscale_data

    data = multiscale_data(data, m, layout.y_axis, layout.x_axis)  # a large map: a pyramid, same placement
    kwargs = {
        "name": name,
        "colormap": colormap,
        "blending": blending,
        "opacity": opacity,
        "visible": visible,
        "contrast_limits": (0.0, 1.0),
        "scale": scale,
        "translate": translate,
        "metadata": {META_KEY: {"source": src.name, "frame": frame, **(metadata or {})}},
    }
    if isinstance(data, list):
        kwargs["multiscale"] = True
    return data, kwargs, "image"


ALL_CLASSES = "all classes"


def ranked_maps(result: ExplainResult) -> tuple[np.ndarray, list[str]]:
    """The maps (K, H, W) and their class names, the most probable class first."""
    maps = np.asarray(result.maps)
    if maps.ndim == 2:
        maps = maps[np.newaxis]
    names = list(result.class_names)
    if len(names) != maps.shape[0]:
        raise ValueError(f"{maps.shape[0]} maps for {len(names)} class names")
    probs = np.asarray(getattr(result, "probabilities", []), dtype=float).reshape(-1)
    if probs.size == len(names) and len(names) > 1:
        order = [int(i) for i in np.argsort(-probs, kind="stable")]
        maps, names = maps[order], [names[i] for i in order]
    return maps, names


def with_class_axis(layer: LayerDataTuple, names: Sequence[str], stack: np.ndarray, layout: Layout) -> LayerDataTuple:
    """``layer`` (the top class's map, placed by :func:`place_map` on ``layout``) with every
    class's map (K, h, w) on a leading class axis: one layer and a "class" slider instead
    of one layer per class.  Other axes are broadcast views, never copies."""
    data, kwargs, kind = layer
    k, h, w = stack.shape
    shape = [k] + [h if d == layout.y_axis else w if d == layout.x_axis else 1 for d in range(data.ndim)]
    full = np.broadcast_to(np.ascontiguousarray(stack, dtype=np.float32).reshape(shape), (k, *data.shape))
    meta = dict(kwargs["metadata"][META_KEY])
    meta.update({"class": names[0], "axis_classes": list(names), "class_axis": 0})  # the slider's order
    return full, {**kwargs, "scale": (1.0, *kwargs["scale"]), "translate": (0.0, *kwargs["translate"]),
                  "metadata": {META_KEY: meta}}, kind


def explanation_layers(result: ExplainResult, src: SourceInfo, layout: Layout, frame: int = 0,
                       placement: tuple[Sequence[float], Sequence[float]] | None = None) -> list[LayerDataTuple]:
    """The maps of an ``ExplainResult`` (maps (K, H, W) in [0, 1]) as ONE layer: one map as
    it is, several with a leading class axis, the most probable class first (index 0 of
    the slider).  ``placement`` (scale, translate of map cells in source pixels) for a
    map of a pyramid level."""
    maps, names = ranked_maps(result)
    extra = _plain(result.metadata()) if hasattr(result, "metadata") else {"method": str(result.method)}
    # normal (translucent) blending: additive maps washed the image out; the viewer
    # gives explanation maps a colormap whose low end is transparent
    title = names[0] if len(names) == 1 else ALL_CLASSES
    top = heatmap_layer(np.clip(np.nan_to_num(maps[0]), 0.0, 1.0), map_name(src.name, str(result.method), title),
                        src, layout, frame,
                        map_scale=None if placement is None else placement[0],
                        map_translate=None if placement is None else placement[1],
                        metadata={**extra, "class": names[0], "title": map_title(src.name, str(result.method), title)},
                        blending=EXPLAIN_BLENDING)
    if len(names) == 1:
        return [top]
    return [with_class_axis(top, names, np.clip(np.nan_to_num(maps), 0.0, 1.0), layout)]


def probability_map_layers(
    prob_map: np.ndarray, grid: TileGrid, classes: Sequence[str], src: SourceInfo, layout: Layout, frame: int = 0,
    model: str = "",
) -> list[LayerDataTuple]:
    """A tiled probability map (K, H', W') as one layer per class, placed by its grid."""
    (sy, sx), (ty, tx) = grid.scale_translate()
    return [
        heatmap_layer(p, probability_map_name(src.name, c), src, layout, frame,
                      colormap=PROBABILITY_COLORMAP, map_scale=(sy, sx), map_translate=(ty, tx),
                      metadata={"class": c, "kind": "tiled probability", "model": model,
                                "title": f"tiled probability of class '{c}' for image '{src.name}' ({model})",
                                "tile_hw": list(grid.tile_hw), "stride_hw": list(grid.stride_hw)})
        for p, c in zip(np.asarray(prob_map), classes)
    ]


def channel_grid_layers(
    plane: np.ndarray,
    channel_names: Sequence[str],
    result: ExplainResult,
    src: SourceInfo,
    layout: Layout,
) -> list[LayerDataTuple]:
    """Study 4's view: each input channel beside the explanation, in (channel, map) pairs.

    ``plane`` is the explained frame as (C, H, W).  Layers alternate a grey channel
    image and the map(s) on it, so napari's grid mode with stride ``1 + K`` puts every
    channel with its maps in one view box.  All are 2-D on the source's image plane.
    """
    from ..core.io.images import guess_layout

    plane = np.asarray(plane)
    flat = SourceInfo(
        src.name, tuple(plane.shape[-2:]), False,
        (src.scale[layout.y_axis], src.scale[layout.x_axis]),
        (src.translate[layout.y_axis], src.translate[layout.x_axis]),
    )
    flat_layout = guess_layout(plane.shape[-2:], "none", name=src.name)
    maps, names = ranked_maps(result)
    maps = np.clip(np.nan_to_num(maps), 0.0, 1.0)
    title = names[0] if len(names) == 1 else ALL_CLASSES
    out: list[LayerDataTuple] = []
    for c, channel in enumerate(channel_names):
        img = plane[c]
        lo, hi = (float(np.min(img)), float(np.max(img))) if img.size else (0.0, 1.0)
        out.append((img, {
            "name": channel_layer_name(src.name, channel),
            "colormap": "gray",
            "contrast_limits": (lo, hi if hi > lo else lo + 1.0),
            "scale": flat.scale,
            "translate": flat.translate,
            "metadata": {META_KEY: {"source": src.name, "channel": channel,
                                    "title": f"channel {channel} of image '{src.name}'"}},
        }, "image"))
        # one map layer per channel (a class axis for several classes): the grid stays 2 x C boxes
        name = map_name(src.name, str(result.method), title, channel)
        desc = map_title(src.name, str(result.method), title, channel)
        top = heatmap_layer(maps[0], name, flat, flat_layout,
                            metadata={"class": names[0], "channel": channel, "title": desc}, blending=EXPLAIN_BLENDING)
        out.append(top if len(names) == 1 else with_class_axis(top, names, maps, flat_layout))
    return out


def prediction_metadata(base: str, shown_name: str, table_part: dict[str, Any], layout: Layout) -> dict[str, Any]:
    """The ``cellclass`` entry of a classified layer's metadata."""
    return {
        "base_name": base,
        "shown_name": shown_name,
        "frame_axis": layout.frame_axis,
        "n_frames": layout.n_frames,
        "channel_axis": layout.channel_axis,
        **table_part,
    }


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)
