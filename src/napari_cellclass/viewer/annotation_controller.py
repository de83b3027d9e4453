"""What the annotate panel does in the viewer: keys 1–9, the current image and
frame, the annotation layers' events, jumping to an item.  No Qt widgets here; the
dock passes a ``defer`` callable (a zero-delay timer) so that layers are redrawn
after napari has finished the event that changed them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TYPE_CHECKING

import numpy as np

from ..core.annotations import AnnotationStore
from . import annotation_layers as AL
from .notify import notify_error

if TYPE_CHECKING:
    from napari.utils.events import Event
    from napari.layers import Layer
    from napari import Viewer
    from ..core.annotations.table import ItemRow

KEYS = tuple(str(n) for n in range(1, 10))


class AnnotationController:
    """Ties one viewer's layers to one :class:`AnnotationStore` at a time."""

    def __init__(self, viewer: Viewer, defer: Callable[[Callable[[], None]], None], changed: Callable[[], None]) -> None:
        self.viewer = viewer
        self.store: AnnotationStore | None = None
        self.current_class: str | None = None
        self.crop_size = 64
        self.advance = True  # after a key on a stack, move to the next plane
        self._defer = defer
        self._changed = changed
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
        for target in self._keyed:
            for k in KEYS:
                target.bind_key(k, None, overwrite=True)
        self._keyed = []
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
        self._keyed = [t for t in self._keyed if t is not layer]
        for entry in [h for h in self._hooked if h[1] == str(id(layer))]:
            entry[0].disconnect(entry[2])
            self._hooked.remove(entry)

    # ------------------------------------------------------------------ keys 1–9
    def _bind_keys(self) -> None:
        self._key_target(self.viewer, lambda n: lambda _v: self.key(n))
        for layer in self.viewer.layers:
            self._key_layer(layer)

    def _key_layer(self, layer: Layer) -> None:
        from napari.layers import Image

        from ..app.layer_data import is_derived

        if (isinstance(layer, Image) and not is_derived(layer.metadata)) or AL.META in layer.metadata:
            # napari binds 1–7 to layer modes; on these layers the keys label instead
            self._key_target(layer, lambda n: lambda lyr: self.key(n, lyr))

    def _key_target(self, target: Viewer | Layer, make: Callable[[int], Callable[[Any], None]]) -> None:
        for k in KEYS:
            target.bind_key(k, make(int(k)), overwrite=True)
        self._keyed.append(target)

    def key(self, n: int, layer: Layer | None = None) -> Any:
        """Key ``n``: label the current image/frame with class ``n`` (image layers),
        or make class ``n`` current and relabel the selection (annotation layers)."""
        try:
            return self._key(n, layer)
        except Exception as err:  # noqa: BLE001 - a key press never raises into napari
            notify_error(err)
            return None

    def _key(self, n: int, layer: Layer) -> Any:
        from napari.layers import Labels, Points, Shapes

        store = self.store
        if store is None or store.class_for_key(n) is None:
            raise _no_class(n, store)
        cls = store.class_for_key(n)
        if layer is not None and AL.META in layer.metadata:
            self.current_class = cls
            if isinstance(layer, Labels):
                layer.selected_label = n
            elif isinstance(layer, (Shapes, Points)) and layer.selected_data:
                ids = [int(layer.features["id"].iloc[i]) for i in sorted(layer.selected_data)]
                for item_id in ids:
                    if store.item(item_id).label != cls:
                        store.relabel(item_id, cls)
            self._changed()
            return cls
        image = layer if layer is not None else self.active_image()
        if image is None:
            raise _no_image()
        b = self.binding(image)
        plane = self.plane_now(b)
        key, frame = b.target(plane)
        item = store.apply_key(key, frame, n)
        if self.advance and b.n_planes > 1 and plane + 1 < b.n_planes:
            self.go_to_plane(b, plane + 1)
        return item

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
            emitter, cb = layer.events.paint, lambda event: self._defer(lambda: self._painted(layer))
        else:
            emitter, cb = layer.events.data, lambda event: self._edited(layer, event)
        emitter.connect(cb)
        self._hooked.append((emitter, tag, cb))
        self._key_layer(layer)

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
        b = self._binding_of(layer)
        if b is None:
            return
        try:
            AL.sync_pixels(b, layer, [self.plane_now(b)] if layer.data.ndim > 2 else [0])
        except Exception as err:  # noqa: BLE001
            notify_error(err)

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
            b = self._binding_of(layer)
            if b is not None:
                self._hook(layer)
                self._render(b, layer)

    def _render(self, b: AL.Binding, layer: Layer) -> None:
        kind = layer.metadata[AL.META]["kind"]
        {"regions": AL.render_regions, "points": AL.render_points, "pixels": AL.render_pixels}[kind](b, layer)
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


def _no_class(n: int, store: AnnotationStore) -> Exception:
    from ..core.errors import DataError

    if store is None:
        return DataError("no annotation file is open", "open or create one in the annotate panel")
    return DataError(f"no class has the key {n}", "add classes in the annotate panel (keys 1–9 follow their order)")


def _no_image() -> Exception:
    from ..core.errors import DataError

    return DataError("no image layer to annotate", "open an image, or a folder as a stack")
