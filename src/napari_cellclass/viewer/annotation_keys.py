"""The annotate panel's keyboard shortcuts, chosen so that napari's documented ones
keep working (napari 0.9: ``napari.utils.shortcuts``).

* **1–9 on an image layer** label the current image or frame with class 1–9.  napari
  binds only 1 (pan/zoom) and 2 (transform) on image layers; their buttons stay in the
  layer controls.
* **1–9 on the annotation layers are napari's**: on the pixels (Labels) layer 1 erase,
  2 paint, 3 polygon, 4 fill, 5 pick, 6 pan/zoom, 7 transform; likewise on the regions
  (Shapes) and points layers.
* **Alt+1–9 anywhere** pick class 1–9: on an annotation layer it becomes the class new
  regions, points and paint strokes get (and selected regions or points are relabelled);
  on an image layer it labels the image or frame, as 1–9 do.  napari binds no Alt+digit.
* **Ctrl+Alt+Z** undoes the last annotation change (the panel's Undo).  napari keeps
  Ctrl+Z / Ctrl+Shift+Z: on the pixels layer they undo / redo strokes, and the
  annotation file follows (see ``AnnotationController``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import annotation_layers as AL
from .notify import notify_error

if TYPE_CHECKING:
    from napari.layers import Layer

    from ..core.annotations import AnnotationStore

DIGITS = tuple(str(n) for n in range(1, 10))
CLASS_KEYS = tuple(f"Alt-{n}" for n in range(1, 10))
UNDO_KEY = "Control-Alt-Z"

#: what the dock shows as help (tooltips); kept beside the bindings so they cannot drift apart
HELP = ("Keys (on the image in the viewer):\n"
        "  1–9  label the current image or frame with class 1–9 (on an image layer)\n"
        "  Alt+1–9  pick class 1–9 (on an annotation layer: for new regions, points and\n"
        "           paint strokes, and relabel the selected ones; on an image: label it)\n"
        "  Ctrl+Alt+Z  undo the last annotation change\n"
        "napari's own keys keep working on the annotation layers: on the pixels layer\n"
        "1 erase, 2 paint, 3 polygon, 4 fill, 5 pick, 6 pan/zoom, 7 transform, and\n"
        "Ctrl+Z / Ctrl+Shift+Z undo / redo a stroke (the annotation file follows).")


class AnnotationKeys:
    """Mixin of :class:`~.annotation_controller.AnnotationController`: binds and
    unbinds the keys, and does what they ask."""

    viewer: Any
    store: AnnotationStore | None
    current_class: str | None
    advance: bool
    _keyed: list[Any]
    _changed: Callable[[], None]
    _undo: Callable[[], None] | None

    def _bind_keys(self) -> None:
        viewer = self.viewer
        # the viewer's keymap answers when the active layer's does not: Alt+digits and
        # Ctrl+Alt+Z for every layer, the plain digits only where no layer claims them
        for k, ck in zip(DIGITS, CLASS_KEYS):
            n = int(k)
            viewer.bind_key(k, lambda _v, n=n: self._viewer_digit(n), overwrite=True)
            viewer.bind_key(ck, lambda _v, n=n: self.key(n, self._active_layer()), overwrite=True)
        viewer.bind_key(UNDO_KEY, lambda _v: self._undo_key(), overwrite=True)
        self._keyed.append(viewer)
        for layer in viewer.layers:
            self._key_layer(layer)

    def _unbind_keys(self) -> None:
        for target in self._keyed:
            for k in DIGITS:
                target.bind_key(k, None, overwrite=True)
            if target is self.viewer:
                for k in (*CLASS_KEYS, UNDO_KEY):
                    target.bind_key(k, None, overwrite=True)
        self._keyed = []

    def _key_layer(self, layer: Layer) -> None:
        from napari.layers import Image

        from ..app.layer_data import is_derived

        if isinstance(layer, Image) and not is_derived(layer.metadata) and AL.META not in layer.metadata:
            # napari binds 1 and 2 to image modes; on images the digits label instead
            for k in DIGITS:
                layer.bind_key(k, lambda lyr, n=int(k): self.key(n, lyr), overwrite=True)
            self._keyed.append(layer)

    def _active_layer(self) -> Any:
        return self.viewer.layers.selection.active

    def _viewer_digit(self, n: int) -> Any:
        """A digit no layer claimed: label the image when no layer (or an annotated
        image) is active; on any other layer (a napari Labels layer's 8 or 9, a map's
        3–9) do nothing."""
        active = self._active_layer()
        if active is None or active in self.image_layers():  # type: ignore[attr-defined]
            return self.key(n, active)
        return None

    def _undo_key(self) -> None:
        if self._undo is not None:
            self._undo()

    def key(self, n: int, layer: Layer | None = None) -> Any:
        """Class ``n``: label the current image/frame with it (image layers), or make it
        current and relabel the selection (annotation layers)."""
        try:
            return self._key(n, layer)
        except Exception as err:  # noqa: BLE001 - a key press never raises into napari
            notify_error(err)
            return None

    def _key(self, n: int, layer: Layer | None) -> Any:
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
        images = self.image_layers()  # type: ignore[attr-defined]  # maps and channel views are not annotated
        image = layer if layer is not None and layer in images else self.active_image()  # type: ignore[attr-defined]
        if image is None:
            raise _no_image()
        b = self.binding(image)  # type: ignore[attr-defined]
        plane = self.plane_now(b)  # type: ignore[attr-defined]
        key, frame = b.target(plane)
        item = store.apply_key(key, frame, n)
        if self.advance and b.n_planes > 1 and plane + 1 < b.n_planes:
            self.go_to_plane(b, plane + 1)  # type: ignore[attr-defined]
        return item


def _no_class(n: int, store: AnnotationStore | None) -> Exception:
    from ..core.errors import DataError

    if store is None:
        return DataError("no annotation file is open", "open or create one in the annotate panel")
    return DataError(f"no class has the key {n}", "add classes in the annotate panel (keys 1–9 follow their order)")


def _no_image() -> Exception:
    from ..core.errors import DataError

    return DataError("no image layer to annotate", "open an image, or a folder as a stack")
