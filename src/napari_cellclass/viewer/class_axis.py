"""A map layer's class axis as a named slider: the viewer's slider for that axis is
labelled with the class it shows ("class: ER") and starts on the most probable class.
Main thread only."""

from __future__ import annotations

import weakref
from typing import Any

from ..app.layer_data import META_KEY

_FOLLOWED: list[weakref.ref[Any]] = []  # the dims we listen to already (napari's Dims is unhashable)


def _class_layers(viewer: Any) -> list[Any]:
    return [layer for layer in viewer.layers if (layer.metadata.get(META_KEY) or {}).get("class_axis") == 0]


def _relabel(viewer: Any) -> None:
    dims = viewer.dims
    labels = list(dims.axis_labels)
    for layer in _class_layers(viewer):
        axis = dims.ndim - layer.ndim  # napari aligns layers on their last axes
        classes = layer.metadata[META_KEY]["axis_classes"]
        if not 0 <= axis < len(labels):
            continue
        step = int(dims.current_step[axis])
        labels[axis] = f"class: {classes[min(max(step, 0), len(classes) - 1)]}"
    if tuple(labels) != tuple(dims.axis_labels):
        dims.axis_labels = labels


def follow_class_axis(viewer: Any, layer: Any) -> None:
    """If ``layer`` has a class axis: show its top class (index 0) and name the slider."""
    meta = layer.metadata.get(META_KEY) or {}
    if meta.get("class_axis") != 0 or layer not in viewer.layers:
        return
    dims = viewer.dims
    axis = dims.ndim - layer.ndim
    if 0 <= axis < dims.ndim and dims.current_step[axis] != 0:
        dims.set_current_step(axis, 0)  # the most probable class first (each change re-slices every layer)
    _FOLLOWED[:] = [r for r in _FOLLOWED if r() is not None]
    if not any(r() is dims for r in _FOLLOWED):
        _FOLLOWED.append(weakref.ref(dims))
        ref = weakref.ref(viewer)
        dims.events.current_step.connect(lambda *_: (v := ref()) is not None and _relabel(v))
    _relabel(viewer)
