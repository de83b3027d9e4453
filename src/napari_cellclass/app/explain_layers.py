"""The Explain dock's layer data, made in the worker thread: the Qt thread then only
adds ready tuples (arrays placed, contrast limits, colormaps and names all set), so
nothing computed waits for it between layer additions."""

from __future__ import annotations

from typing import Any

from . import layer_data as L


def explanation_tuples(out: Any, grid: bool) -> tuple[list[L.LayerDataTuple], list[L.LayerDataTuple]]:
    """(the map layer on the source, the channel-grid pairs) for an ``Explanation``.

    One map layer per image whatever the number of classes (a class axis), and with
    ``grid`` one (channel, map) pair per channel: at most 1 + 2 C layers."""
    from ..core.io.images import guess_layout

    info, layout = out.request.info, out.layout
    n_channels = layout.n_channels
    if out.request.combined:  # the maps go on the first channel layer, which has no channel axis
        layout = guess_layout(info.shape, "none", name=info.name)
    maps = L.explanation_layers(out.result, info, layout, out.frame, out.placement)
    pairs: list[L.LayerDataTuple] = []
    if grid and not info.rgb and n_channels > 1 and (layout.channel_axis is not None or out.request.combined):
        pairs = L.channel_grid_layers(out.plane, out.channel_names, out.result, info, layout)
    return maps, pairs
