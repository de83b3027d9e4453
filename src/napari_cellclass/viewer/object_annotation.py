"""Label segmented objects by clicking them: the napari side, without Qt.

With a Labels layer chosen as "objects", a click (not a drag) on it — or on its
``· classes`` layer — labels the object under the pointer with the current class
(:func:`core.annotations.objects.annotate_object`), on the image layer of the same
grid.  The item records the object and its label image (the layer's file when it
has one, else its pixels' hash and name), so a reopened session knows which objects
are labelled.  Keys 1–9 on that layer make class n current and relabel the object
clicked last, as they relabel the selection on annotation layers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.annotations.objects import LabelsSource, annotate_object, label_at, labels_source
from ..core.errors import DataError
from ..core.io.objects import label_plane
from .object_layers import show_annotated

if TYPE_CHECKING:
    from napari import Viewer

    from ..core.annotations.schema import Item
    from .annotation_controller import AnnotationController


class ObjectClicks:
    """Turns clicks on a Labels layer into object annotations of the controller's store."""

    def __init__(self, viewer: Viewer, controller: AnnotationController, notify: Callable[[str], None],
                 on_error: Callable[[Exception], None], set_class: Callable[[str], None]) -> None:
        self.viewer, self.controller = viewer, controller
        self._notify, self._on_error, self._set_class = notify, on_error, set_class
        self.layer: Any = None
        self.margin = 0
        self.last: Item | None = None
        self._source: tuple[int, LabelsSource] | None = None  # (id of the data hashed, its reference)
        viewer.mouse_drag_callbacks.append(self._mouse)

    def close(self) -> None:
        if self._mouse in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.remove(self._mouse)
        self.set_layer(None)

    def set_layer(self, layer: Any) -> None:
        if self.layer is not None:
            for ev in ("data", "paint"):
                if hasattr(self.layer.events, ev):
                    getattr(self.layer.events, ev).disconnect(self._forget)
            for n in range(1, 10):  # napari's own keys for the layer again
                self.layer.bind_key(str(n), None)
        self.layer, self.last, self._source = layer, None, None
        if layer is not None:
            for ev in ("data", "paint"):  # edited objects: hash the pixels again
                if hasattr(layer.events, ev):
                    getattr(layer.events, ev).connect(self._forget)
            for n in range(1, 10):
                layer.bind_key(str(n), self._key_handler(n), overwrite=True)

    def _forget(self, *_: Any) -> None:
        self._source = None

    def source(self) -> LabelsSource:
        """The reference object annotations of this layer record (its pixels hashed once)."""
        data = self.layer.data
        if self._source is None or self._source[0] != id(data):
            path = getattr(getattr(self.layer, "source", None), "path", None)
            self._source = (id(data), labels_source(self.controller.store, data, self.layer.name,
                                                    Path(path) if path else None))
        return self._source[1]

    def image_layer(self) -> Any | None:
        """The image layer the objects segment: the one the user looks at if it fits, else the only fitting one."""
        hw = tuple(self.layer.data.shape[-2:])
        fits = [lay for lay in self.controller.image_layers()
                if tuple(lay.data.shape[-3:-1] if getattr(lay, "rgb", False) else lay.data.shape[-2:]) == hw]
        active = self.controller.active_image()
        return active if active in fits else (fits[-1] if fits else None)

    # ------------------------------------------------------------------ labelling
    def object_at(self, world: Any) -> tuple[int, int]:
        """(frame, label) under a world point (label 0: background)."""
        data_point = np.asarray(self.layer.world_to_data(world), dtype=float)
        frame = int(round(float(data_point[-3]))) if self.layer.ndim >= 3 else 0  # noqa: RUF046 - numpy floats
        n = self.layer.data.shape[0] if self.layer.ndim >= 3 else 1
        if not 0 <= frame < n:
            return frame, 0
        return frame, label_at(self.layer.data, frame, (data_point[-2], data_point[-1]))

    def click(self, world: Any) -> Item | None:
        """Label the object under ``world`` with the current class; None on the background."""
        store = self.controller.store
        if self.layer is None or store is None:
            return None
        frame, label = self.object_at(world)
        if label == 0:
            self._notify("no object under the pointer: click inside a segmented cell")
            return None
        cls = self.controller.current_class
        if cls is None or cls not in store.class_names:
            raise DataError("there is no current class to give the object", "add a class and pick it in the list")
        image = self.image_layer()
        if image is None:
            raise DataError(f"no image layer on the grid of '{self.layer.name}'",
                            "open the image the Labels layer segments (same height and width)")
        b = self.controller.binding(image)
        if self.layer.ndim == 2 and b.n_planes > 1:  # one label image for every frame: the frame on screen
            frame = self.controller.plane_now(b)
        key, store_frame = b.target(frame if b.n_planes > 1 else 0)
        plane = np.asarray(label_plane(self.layer.data, frame if self.layer.ndim >= 3 else 0, self.layer.name))
        self.last = annotate_object(store, key, store_frame, plane, label, cls, self.margin, self.source())
        self._notify(f"object {label}" + (f" of frame {frame}" if self.layer.ndim >= 3 else "") + f": {cls}")
        self.show()
        return self.last

    def show(self) -> None:
        """Redraw ``<labels> · annotated`` from the store (after a click, an undo, a delete)."""
        from ..core.annotations.objects import labelled_objects

        store = self.controller.store
        if self.layer is None or store is None or self.layer not in self.viewer.layers:
            return
        done = {k: it.label for k, it in labelled_objects(store, self.source()).items()}
        show_annotated(self.viewer, self.layer, done, {c.name: c.color for c in store.classes})

    def _key_handler(self, n: int) -> Callable[[Any], None]:
        def handler(_layer: Any) -> None:
            store = self.controller.store
            if store is None or n > len(store.class_names):
                return
            name = store.class_names[n - 1]
            self._set_class(name)
            if self.last is not None and any(it.id == self.last.id for it in store.items) and self.last.label != name:
                try:
                    self.last = store.relabel(self.last.id, name)
                except Exception as err:  # noqa: BLE001 - a notification, never an exception in napari's key handler
                    self._on_error(err)

        return handler

    def _mouse(self, viewer: Viewer, event: Any) -> Any:
        active = viewer.layers.selection.active
        if self.layer is None or active is None or self.controller.store is None:
            return
        views = active.metadata.get("cellclass_objects") or {}  # its · classes / · annotated layers
        if active is not self.layer and views.get("source") != self.layer.name:
            return
        if getattr(active, "mode", "pan_zoom") != "pan_zoom":  # painting or picking: not a label click
            return
        position = tuple(event.position)
        yield
        dragged = False
        while event.type == "mouse_move":
            dragged = True
            yield
        if dragged:  # panning the view
            return
        try:
            self.click(position)
        except Exception as err:  # noqa: BLE001 - shown, never raised into napari's event loop
            self._on_error(err)
