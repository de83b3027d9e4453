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
ANNOTATED_SUFFIX = " · annotated"


def class_colors(classes: list[str]) -> dict[str, str]:
    """Class -> hex colour, the annotation palette's order (so the legend matches Annotate)."""
    return {c: default_color(k) for k, c in enumerate(classes)}


def show_objects(viewer: Viewer, labels_layer: Labels, outcome: ObjectOutcome) -> Any:
    """Fill ``labels_layer.features`` and add/update ``<labels> · classes``; returns that layer."""
    import pandas as pd
    from napari.utils.colormaps import DirectLabelColormap

    labels_layer.features = pd.DataFrame(outcome.columns())
    index = {c: k + 1 for k, c in enumerate(outcome.classes)}
    # per (frame, label): in a stack the same id may be another cell, of another class, in each frame
    coloured = paint_classes(labels_layer.data, {(r.box.frame, r.box.label): index.get(str(r.predicted_class).split(";")[0], 0)
                                                 for r in outcome.table.rows})
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


def paint_classes(data: Any, assigned: dict[tuple[int, int], int]) -> np.ndarray:
    """A (T,)H,W uint16 image: each assigned (frame, label) object filled with its value, 0 elsewhere."""
    data = np.asarray(data)
    out = np.zeros(data.shape, np.uint16)
    planes = [data] if data.ndim == 2 else list(data)
    for t, plane in enumerate(planes):
        mine = {label: v for (f, label), v in assigned.items() if f == t}
        if not mine:
            continue
        lut = np.zeros(max(int(plane.max()), max(mine)) + 1, np.uint16)
        for label, v in mine.items():
            lut[label] = v
        target = out if data.ndim == 2 else out[t]
        target[...] = lut[np.where(plane > 0, plane, 0)]
    return out


def show_annotated(viewer: Viewer, labels_layer: Labels, assigned: dict[tuple[int, int], str],
                   colors: dict[str, str]) -> Any:
    """``<labels> · annotated``: the objects labelled so far, each in its class's colour
    (the Annotate dock's palette), placed like the class layer; removed when none is left."""
    from napari.utils.colormaps import DirectLabelColormap

    name = labels_layer.name + ANNOTATED_SUFFIX
    if not assigned:
        if name in viewer.layers:
            viewer.layers.remove(name)
        return None
    classes = list(colors)
    data = paint_classes(labels_layer.data, {k: classes.index(c) + 1 for k, c in assigned.items() if c in colors})
    cmap = {None: (0, 0, 0, 0), 0: (0, 0, 0, 0), **{k + 1: colors[c] for k, c in enumerate(classes)}}
    kwargs = {"name": name, "scale": tuple(labels_layer.scale), "translate": tuple(labels_layer.translate),
              "opacity": 0.7, "colormap": DirectLabelColormap(color_dict=cmap),
              "metadata": {"cellclass_objects": {"classes": classes, "colors": colors, "source": labels_layer.name}}}
    active = viewer.layers.selection.active
    layer = _upsert_labels(viewer, data, kwargs)
    layer.editable = False
    keep_apart(viewer, layer, labels_layer)
    if active is not None and active in viewer.layers:
        viewer.layers.selection.active = active  # a click keeps the user's layer
    return layer


def outline_object(viewer: Viewer, labels_layer: Labels, frame: int, bbox: tuple[int, int, int, int]) -> Any:
    """A white box around one object in ``<labels> next to label`` (one box at a time)."""
    r0, c0, r1, c1 = (float(v) for v in bbox)
    corners = np.array([[r0 - 0.5, c0 - 0.5], [r0 - 0.5, c1 - 0.5], [r1 - 0.5, c1 - 0.5], [r1 - 0.5, c0 - 0.5]])
    ndim = labels_layer.ndim
    if ndim >= 3:
        corners = np.concatenate([np.full((4, ndim - 2), float(frame)), corners], axis=1)
    name = labels_layer.name + " next to label"
    layer = viewer.layers[name] if name in viewer.layers else None  # noqa: SIM401 - LayerList has no get()
    if layer is None:
        layer = viewer.add_shapes(ndim=ndim, name=name, edge_color="white", edge_width=2, face_color="transparent",
                                  scale=tuple(labels_layer.scale), translate=tuple(labels_layer.translate))
    layer.data = []
    layer.add_rectangles([corners], edge_color="white", face_color="transparent")
    return layer


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
    """The viewer's Labels layers that hold objects (not the class-coloured results, nor
    the Annotate dock's painted-pixel layers)."""
    from napari.layers import Labels

    from .annotation_layers import META

    return [layer for layer in viewer.layers
            if isinstance(layer, Labels) and "cellclass_objects" not in layer.metadata and META not in layer.metadata]
