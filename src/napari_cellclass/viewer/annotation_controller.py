"""What the annotate panel does in the viewer: keys (:mod:`.annotation_keys`), the
current image and frame, the annotation layers' events (napari's own undo and redo
on the pixels layer included), jumping to an item.  No Qt widgets here; the
dock passes a ``defer`` callable (a zero-delay timer) so that layers are redrawn
after napari has finished the event that changed them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TYPE_CHECKING

import numpy as np

from ..core.annotations import AnnotationStore
from . import annotation_layers as AL
from .annotation_keys import AnnotationKeys
from .notify import notify_error

if TYPE_CHECKING:
    from napari.utils.events import Event
    from napari.layers import Layer
    from napari import Viewer
    from ..core.annotations.table import ItemRow


class AnnotationController(AnnotationKeys):
    """Ties one viewer's layers to one :class:`AnnotationStore` at a time."""

    def __init__(self, viewer: Viewer, defer: Callable[[Callable[[], None]], None], changed: Callable[[], None],
                 undo: Callable[[], None] | None = None) -> None:
        self.viewer = viewer
        self.store: AnnotationStore | None = None
        self.current_class: str | None = None
        self.crop_size = 64
        self.advance = True  # after a key on a stack, move to the next plane
        self._defer = defer
        self._changed = changed
        self._undo = undo  # the panel's Undo, for its shortcut
        self._shown: dict[int, np.ndarray] = {}  # pixels layer -> the labels last written to / read from the store
        self._bindings: dict[int, AL.Binding] = {}
        self._keyed: list[Any] = []
        self._hooked: list[tuple[Any, str, Callable]] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._render_pending = False
        self._dirty: set[int] = set()  # annotation layers edited but not yet written to the store
        self._closed = False
        viewer.layers.events.inserted.connect(self._layer_inserted)
        viewer.layers.events.removed.connect(self._layer_removed)
        self._bind_keys()

    # ------------------------------------------------------------------ store
    def set_store(self, store: AnnotationStore | None) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        self.store, self._bindings = store, {}
        if store is not None:
            self._unsubscribe = store.on_change(lambda _what: self._store_changed())
            for layer in self.image_layers():
                if self._matches_store(layer):
                    self.binding(layer)
        self.render_all()
        self._changed()

    def _matches_store(self, layer: Layer) -> bool:
        """Bind an open layer at once only when the file already holds its image."""
        from pathlib import Path

        store = self.store
        if store is None:
            return False
        if AL.is_folder_stack(layer.data):
            return any(store.find_image(path=p) for p in layer.data.paths)
        path = getattr(getattr(layer, "source", None), "path", None)
        if path is not None and Path(path).is_file():
            return store.find_image(path=path) is not None
        return store.find_image(name=AL.image_name(layer)) is not None

    def _store_changed(self) -> None:
        self.schedule_render()
        self._changed()

    def close(self) -> None:
        """Stop listening and give napari its keys back (idempotent)."""
        if self._closed:
            return
        self._closed = True
        ev = self.viewer.layers.events
        ev.inserted.disconnect(self._layer_inserted)
        ev.removed.disconnect(self._layer_removed)
        for emitter, _, cb in self._hooked:
            emitter.disconnect(cb)
        self._hooked = []
        self._unbind_keys()
        if self._unsubscribe is not None:
            self._unsubscribe()

    # ------------------------------------------------------------------ layers
    def image_layers(self) -> list[Any]:
        from .layers import image_layers

        return image_layers(self.viewer)

    def binding(self, layer: Layer) -> AL.Binding:
        """The layer's binding, registering its image in the store on first use."""
        b = self._bindings.get(id(layer))
        if b is None or b.layer is not layer:
            if self.store is None:
                raise RuntimeError("no annotation file is open")
            b = AL.bind_layer(self.store, layer)
            self._bindings[id(layer)] = b
        return b

    def active_image(self) -> Any | None:
        """The image the user is looking at: the selected image layer, the image of a
        selected annotation layer, else the top image layer."""
        from napari.layers import Image

        active = self.viewer.layers.selection.active
        if isinstance(active, Image) and active in self.image_layers():
            return active
        meta = (active.metadata.get(AL.META) or {}) if active is not None else {}
        if meta.get("image"):
            found = AL.find_image_layer(self.viewer, meta["image"])
            if found is not None:
                return found
        layers = self.image_layers()
        return layers[-1] if layers else None

    def plane_now(self, b: AL.Binding) -> int:
        return b.plane_at(b.layer.world_to_data(self.viewer.dims.point))

    def go_to_plane(self, b: AL.Binding, plane: int) -> None:
        if b.frame_pos is None:
            return
        axis = self.viewer.dims.ndim - b.layer.ndim + b.frame_pos
        world = b.layer.data_to_world([plane if i == b.frame_pos else 0 for i in range(b.layer.ndim)])
        self.viewer.dims.set_point(axis, float(world[b.frame_pos]))

    def _layer_inserted(self, event: Event) -> None:
        self._key_layer(event.value)

    def _layer_removed(self, event: Event) -> None:
        layer = event.value
        self._bindings.pop(id(layer), None)
        self._shown.pop(id(layer), None)
        self._keyed = [t for t in self._keyed if t is not layer]
        for entry in [h for h in self._hooked if h[1] == str(id(layer))]:
            entry[0].disconnect(entry[2])
            self._hooked.remove(entry)

    # ------------------------------------------------------------------ annotation layers
    def add_layer(self, kind: str, image: Any = None) -> Any:
        """Make (or find) the regions / points / pixels layer of ``image`` and hook it up."""
        image = image or self.active_image()
        if image is None:
            raise _no_image()
        b = self.binding(image)
        layer = AL.make_layer(self.viewer, b, kind, self.crop_size)
        self._hook(layer)
        self._render(b, layer)
        self.viewer.layers.selection.active = layer
        if kind == "regions":
            layer.mode = "add_rectangle"
        elif kind == "points":
            layer.mode = "add"
        else:
            layer.mode = "paint"
            layer.selected_label = max(1, (self.store.class_names.index(self.current_class) + 1)
                                       if self.current_class in self.store.class_names else 1)
        return layer

    def _hook(self, layer: Layer) -> None:
        tag = str(id(layer))
        if any(h[1] == tag for h in self._hooked):
            return
        kind = layer.metadata[AL.META]["kind"]
        if kind == "pixels":
            # napari emits "paint" before it writes the pixels: read them a moment later
            hooks = [(layer.events.paint, lambda event: self._defer(lambda: self._painted(layer))),
                     # its undo and redo (Ctrl+Z, Ctrl+Shift+Z) rewrite the pixels and emit set_data only
                     (layer.events.set_data, lambda event: self._defer(lambda: self._pixels_reset(layer))),
                     (layer.events.selected_label, lambda event: self._label_picked(layer))]
        else:
            hooks = [(layer.events.data, lambda event: self._edited(layer, event))]
        for emitter, cb in hooks:
            emitter.connect(cb)
            self._hooked.append((emitter, tag, cb))

    def _binding_of(self, layer: Layer) -> AL.Binding | None:
        image = AL.find_image_layer(self.viewer, (layer.metadata.get(AL.META) or {}).get("image", ""))
        return self.binding(image) if image is not None and self.store is not None else None

    def _edited(self, layer: Layer, event: Event) -> None:
        action = str(getattr(event, "action", "") or "")
        if action.rsplit(".", 1)[-1].lower() not in ("added", "removed", "changed"):
            return  # the "-ing" half of napari's event pairs: the data is not final yet
        self._dirty.add(id(layer))
        self._defer(lambda: self.sync(layer))

    def sync(self, layer: Layer) -> None:
        """Write an annotation layer's shapes or points to the store, then redraw it."""
        if id(layer) not in self._dirty:
            return  # synced already (a redraw came first and did it)
        self._dirty.discard(id(layer))
        b = self._binding_of(layer)
        if b is None:
            return
        kind = layer.metadata[AL.META]["kind"]
        try:
            cls = self.current_class or (self.store.class_names[0] if self.store.class_names else None)
            if cls is None:
                from ..core.errors import DataError

                raise DataError("there is no class to give the new annotation", "add a class first")
            if kind == "regions":
                AL.sync_regions(b, layer, cls)
            elif kind == "points":
                AL.sync_points(b, layer, cls, self.crop_size)
        except Exception as err:  # noqa: BLE001 - shown; the layer is redrawn from the store
            notify_error(err)
        self._render(b, layer)

    def _painted(self, layer: Layer) -> None:
        if id(layer) in self._shown:
            self._pixels_reset(layer)  # the planes the stroke changed (none if a redraw wrote them first)
            return
        b = self._binding_of(layer)
        if b is None:
            return
        try:
            AL.sync_pixels(b, layer, [self.plane_now(b)] if layer.data.ndim > 2 else [0])
        except Exception as err:  # noqa: BLE001
            notify_error(err)
        self._shown[id(layer)] = np.array(layer.data, copy=True)

    def _pixels_reset(self, layer: Layer) -> bool:
        """Store every plane of a pixels layer that differs from what the store last
        gave or took (napari's undo/redo, or strokes not written yet), so the file
        never keeps an erased stroke nor a redraw drops a new one.  True if it wrote."""
        seen = self._shown.get(id(layer))
        if seen is None or layer not in self.viewer.layers or seen.shape != layer.data.shape:
            return False
        now = np.asarray(layer.data)
        if np.array_equal(now, seen):
            return False
        b = self._binding_of(layer)
        if b is None:
            return False
        planes = [0] if now.ndim == 2 else [p for p in range(now.shape[0]) if not np.array_equal(now[p], seen[p])]
        self._shown[id(layer)] = np.array(now, copy=True)
        try:
            AL.sync_pixels(b, layer, planes)
        except Exception as err:  # noqa: BLE001 - shown; the layer is redrawn from the store
            notify_error(err)
            return False
        return True

    def _label_picked(self, layer: Layer) -> None:
        """napari's label picker (or its -/= keys) chose value n: class n is current."""
        names = self.store.class_names if self.store is not None else []
        n = int(layer.selected_label)
        if 1 <= n <= len(names) and names[n - 1] != self.current_class:
            self.current_class = names[n - 1]
            self._changed()

    # ------------------------------------------------------------------ drawing
    def schedule_render(self) -> None:
        if not self._render_pending:
            self._render_pending = True
            self._defer(self.render_all)

    def render_all(self) -> None:
        self._render_pending = False
        for layer in list(self.viewer.layers):
            meta = layer.metadata.get(AL.META)
            if not meta:
                continue
            if id(layer) in self._dirty:  # edits not written yet: write them, then redraw
                self.sync(layer)
                continue
            if self._pixels_reset(layer):  # strokes not written yet: the same (the write redraws)
                continue
            b = self._binding_of(layer)
            if b is not None:
                self._hook(layer)
                self._render(b, layer)

    def _render(self, b: AL.Binding, layer: Layer) -> None:
        kind = layer.metadata[AL.META]["kind"]
        {"regions": AL.render_regions, "points": AL.render_points, "pixels": AL.render_pixels}[kind](b, layer)
        if kind == "pixels":
            self._shown[id(layer)] = np.array(layer.data, copy=True)
        color = AL.class_colors(self.store).get(self.current_class or "")
        if color is not None and kind == "regions":
            layer.current_edge_color = color
            layer.feature_defaults["label"] = self.current_class
        elif color is not None and kind == "points":
            layer.current_border_color = color
            layer.current_size = self.crop_size
            layer.feature_defaults["label"] = self.current_class

    def set_current_class(self, name: str | None) -> None:
        self.current_class = name or None
        for layer in self.viewer.layers:
            meta = layer.metadata.get(AL.META) or {}
            if meta.get("kind") == "pixels" and name and self.store is not None and name in self.store.class_names:
                layer.selected_label = self.store.class_names.index(name) + 1
            elif meta.get("kind") in ("regions", "points") and name:
                color = AL.class_colors(self.store).get(name)
                if color is not None:
                    if meta["kind"] == "regions":
                        layer.current_edge_color = color
                    else:
                        layer.current_border_color = color
                    layer.feature_defaults["label"] = name

    # ------------------------------------------------------------------ jumping
    def jump(self, row: ItemRow) -> bool:
        """Show annotation ``row`` (an ``ItemRow``): select its image, move the slider to
        its frame and centre the view on it."""
        for layer in self.image_layers():
            if id(layer) not in self._bindings and not self._matches_store(layer):
                continue
            b = self.binding(layer)
            plane = b.planes().get((row.image, row.frame))
            if plane is None:
                continue
            self.viewer.layers.selection.active = layer
            self.go_to_plane(b, plane)
            self.center_on(b, plane, row.center)
            return True
        return False

    def center_on(self, b: AL.Binding, plane: int, yx: Sequence[float] | np.ndarray) -> None:
        """Centre the view on image pixel ``yx`` of ``plane``."""
        coords = np.zeros(b.layer.ndim)
        coords[-2:] = yx
        if b.frame_pos is not None:
            coords[b.frame_pos] = plane
        world = np.asarray(b.layer.data_to_world(coords))
        camera = self.viewer.scene.camera if hasattr(self.viewer, "scene") else self.viewer.camera
        camera.center = tuple(world[-2:])


def _no_image() -> Exception:
    from ..core.errors import DataError

    return DataError("no image layer to annotate", "open an image, or a folder as a stack")
