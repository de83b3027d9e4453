"""Object results on napari layers: the Labels layer's ``features``, a class-coloured
Labels layer placed on the source, and moving the view to one object."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.annotations.palette import default_color

if TYPE_CHECKING:
    from napari import Viewer
    from napari.layers import Labels

    from ..app.object_jobs import ObjectOutcome

CLASSES_SUFFIX = " · classes"


def class_colors(classes: list[str]) -> dict[str, str]:
    """Class -> hex colour, the annotation palette's order (so the legend matches Annotate)."""
    return {c: default_color(k) for k, c in enumerate(classes)}


def show_objects(viewer: Viewer, labels_layer: Labels, outcome: ObjectOutcome) -> Any:
    """Fill ``labels_layer.features`` and add/update ``<labels> · classes``; returns that layer."""
    import pandas as pd
    from napari.utils.colormaps import DirectLabelColormap

    from ..app.object_jobs import class_lookup

    labels_layer.features = pd.DataFrame(outcome.columns())
    lut = class_lookup(outcome)
    data = np.asarray(labels_layer.data)
    safe = np.where((data >= 0) & (data < lut.size), data, 0)
    coloured = lut[safe]
    colors = class_colors(outcome.classes)
    cmap = {None: (0, 0, 0, 0), 0: (0, 0, 0, 0)}
    cmap.update({k + 1: colors[c] for k, c in enumerate(outcome.classes)})
    kwargs = {
        "name": labels_layer.name + CLASSES_SUFFIX,
        "scale": tuple(labels_layer.scale), "translate": tuple(labels_layer.translate),
        "opacity": 0.6, "colormap": DirectLabelColormap(color_dict=cmap),
        "metadata": {"cellclass_objects": {"classes": outcome.classes, "colors": colors, "model": outcome.model,
                                           "source": labels_layer.name}},
    }
    layer = _upsert_labels(viewer, coloured, kwargs)
    layer.editable = False  # a view of results; painting belongs on the source Labels layer
    keep_apart(viewer, layer, labels_layer)
    return layer


def keep_apart(viewer: Viewer, classes: Labels, source: Labels) -> None:
    """Class colours that do not mix with the source's own: the class layer sits directly
    under the source, drawn translucent over the image, and the source shows only its
    objects' outlines (``contour``), so each object's inside is its class colour alone
    while its outline, the selected object and clicks stay on the source layer."""
    classes.blending = "translucent"
    if not source.contour:
        source.contour = 1
    layers = viewer.layers
    i, j = layers.index(classes), layers.index(source)
    if i != j - 1:
        layers.move(i, j)  # napari inserts before dest_index: directly under the source either way
    viewer.layers.selection.active = source


def go_to_object(viewer: Viewer, labels_layer: Labels, frame: int, label: int, centroid: tuple[float, float]) -> None:
    """Select object ``label`` on ``labels_layer`` and centre the view on it (and its frame)."""
    labels_layer.selected_label = int(label)
    ndim = labels_layer.ndim
    data_point = [0.0] * ndim
    if ndim >= 3:
        data_point[-3] = float(frame)
    data_point[-2], data_point[-1] = float(centroid[0]), float(centroid[1])
    world = labels_layer.data_to_world(data_point)
    if ndim >= 3:
        viewer.dims.set_point(viewer.dims.ndim - 3, float(world[-3]))
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera  # napari >= 0.9 moved it
    camera.center = (float(world[-2]), float(world[-1]))
    viewer.layers.selection.active = labels_layer


def _upsert_labels(viewer: Viewer, data: np.ndarray, kwargs: dict[str, Any]) -> Any:
    """Update the Labels layer of that name in place (keeping the user's opacity and visibility), or add it."""
    from napari.layers import Labels

    name = kwargs["name"]
    existing = viewer.layers[name] if name in viewer.layers else None  # noqa: SIM401 - LayerList has no get()
    if isinstance(existing, Labels) and existing.data.shape == data.shape:
        existing.data = data
        for key in ("scale", "translate", "colormap", "metadata"):
            setattr(existing, key, kwargs[key])
        return existing
    if existing is not None:
        viewer.layers.remove(existing)
    return viewer.add_labels(data, **kwargs)


def object_labels_layers(viewer: Viewer) -> list[Any]:
    """The viewer's Labels layers that hold objects (not the class-coloured results)."""
    from napari.layers import Labels

    return [layer for layer in viewer.layers
            if isinstance(layer, Labels) and "cellclass_objects" not in layer.metadata]
