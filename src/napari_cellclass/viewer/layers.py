"""Putting layer data tuples into a viewer: replace by name, never pile up.

Main thread only.  A layer of the same name and kind is updated in place (keeping
what the user changed, such as its colormap or visibility); otherwise it is replaced
at the same position in the layer list.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any, TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from napari import Viewer

_KEEP_USER_CHOICES = ("colormap", "opacity", "blending", "visible")


def upsert(viewer: Viewer, layer_data: tuple[Any, dict[str, Any], str]) -> Any:
    """Add the layer, or update the existing layer of the same name."""
    from napari.layers import Image, Layer

    data, kwargs, kind = layer_data
    kwargs = _fade_low_end(kwargs)
    if kind != "image":
        raise ValueError(f"only image layers are written here, got {kind!r}")
    name = kwargs["name"]
    existing = viewer.layers[name] if name in viewer.layers else None
    multiscale = bool(kwargs.get("multiscale"))
    if isinstance(existing, Image) and (multiscale or existing.multiscale):
        # a layer cannot switch between one array and a pyramid in place: replace it, keeping the user's look
        kwargs = {**kwargs, **{k: getattr(existing, k) for k in _KEEP_USER_CHOICES}}
    elif isinstance(existing, Image) and existing.ndim == np.ndim(data) and not existing.rgb:
        existing.data = data
        for key, value in kwargs.items():
            if key not in _KEEP_USER_CHOICES and key != "name":
                setattr(existing, key, value)
        return existing
    layer = Layer.create(data, kwargs, kind)
    if existing is not None:
        index = viewer.layers.index(existing)
        viewer.layers.remove(existing)
        viewer.layers.insert(index, layer)
    else:
        viewer.layers.append(layer)
    return layer


def _fade_low_end(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A translucent map with a named colormap gets that colormap with its low end
    transparent: weak evidence leaves the cells visible instead of painting them black."""
    cmap = kwargs.get("colormap")
    if kwargs.get("blending") != "translucent" or not isinstance(cmap, str):
        return kwargs
    faded = _fading(cmap)
    return kwargs if faded is None else {**kwargs, "colormap": faded}


@lru_cache(maxsize=16)
def _fading(cmap: str) -> Any:
    """One colormap object per name: every map shares it (no colormap built per layer)."""
    from napari.utils.colormaps import AVAILABLE_COLORMAPS, Colormap

    if cmap not in AVAILABLE_COLORMAPS:
        return None
    colors = np.asarray(AVAILABLE_COLORMAPS[cmap].map(np.linspace(0.0, 1.0, 64)), dtype=float)
    colors[:, 3] = np.clip(np.linspace(0.0, 1.0, 64) / 0.35, 0.0, 1.0)  # transparent below ~0, opaque from 0.35
    return Colormap(colors, name=f"{cmap} (fading)")


def upsert_all(viewer: Viewer, layers: Sequence[tuple[Any, dict[str, Any], str]]) -> list[Any]:
    return [upsert(viewer, ld) for ld in layers]


def show_in_grid(viewer: Viewer, layers: Sequence[Any], stride: int) -> None:
    """Move ``layers`` to the bottom of the layer list, in order, and turn on grid mode
    with ``stride`` layers per view box (napari groups layers from index 0)."""
    for target, layer in enumerate(layers):
        viewer.layers.move(viewer.layers.index(layer), target)
    grid = viewer.canvas.grid if hasattr(viewer, "canvas") else viewer.grid
    grid.stride = stride
    grid.enabled = True
    viewer.reset_view()


def image_layers(viewer: Viewer) -> list[Any]:
    """Image layers that can be classified: not the maps and channel views we made."""
    from napari.layers import Image

    from ..app.layer_data import is_derived

    return [layer for layer in viewer.layers if isinstance(layer, Image) and not is_derived(layer.metadata)]


def channel_layers_of(viewer: Viewer, layer: Any) -> list[Any]:
    """The layers to combine as channels with ``layer``, in layer-list order: the image
    layers selected in napari's layer list when ``layer`` is one of several selected;
    else the layers of its channel group (a sample opened as coloured channels); else
    just ``layer`` (the run then says how to pick more)."""
    from ..app.channels import SAMPLE_KEY

    images = image_layers(viewer)
    selected = [l for l in images if l in viewer.layers.selection]
    if len(selected) > 1 and any(l is layer for l in selected):
        return selected
    group = (layer.metadata.get(SAMPLE_KEY) or {}).get("group") if layer is not None else None
    if group:
        members = [l for l in images if (l.metadata.get(SAMPLE_KEY) or {}).get("group") == group]
        if len(members) > 1:
            return sorted(members, key=lambda l: (l.metadata[SAMPLE_KEY].get("channel_index", 0)))
    return [layer] if layer is not None else []
