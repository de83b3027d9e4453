"""Between napari layers and the annotation store: which image and frame a layer
position is, and the Shapes / Points / Labels layers that show and edit annotations.

No Qt here, and no math beyond index bookkeeping: the store validates, crops and
writes.  Main thread only (napari layers).

Coordinates: annotation layers get the image layer's scale and translate, so their
data coordinates are the image's pixel coordinates (row y, column x last).  An image
whose leading axes are only frames (a stack, or a folder opened as a
:class:`~napari_cellclass.core.io.gallery.FolderStack`) gets annotation layers with the
same axes; an image whose leading axis holds channels gets 2-D annotation layers
(napari shows them over every channel).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Any, TYPE_CHECKING

import numpy as np

from ..core.annotations import AnnotationStore, hex_to_rgba
from ..core.errors import DataError

if TYPE_CHECKING:
    from napari.layers import Layer
    from napari import Viewer
    from ..core.annotations.schema import Item

META = "cellclass_annotation"  # metadata key of the layers made here: {"image": name, "kind": ...}
KINDS = ("regions", "points", "pixels")
TRANSPARENT = (0.0, 0.0, 0.0, 0.0)


def image_name(layer: Layer) -> str:
    """The layer's own name, without a prediction the Classify dock shows in it."""
    from ..app.layer_data import base_name

    return base_name(layer.name, layer.metadata)


def is_folder_stack(data: Any) -> bool:
    from ..core.io.gallery import FolderStack

    return isinstance(data, FolderStack)


@dataclass
class Binding:
    """One image layer tied to the store: where its planes live in the annotations."""

    layer: Layer
    store: AnnotationStore
    key: str | None  # the image key (None for a folder stack: one key per file)
    frame_pos: int | None  # axis of the layer's data coordinates that selects the plane
    ann_ndim: int  # dimensions of the annotation layers made for it
    _file_keys: dict[int, str] = field(default_factory=dict)

    @property
    def stack(self) -> Any:
        return self.layer.data if is_folder_stack(self.layer.data) else None

    @property
    def n_planes(self) -> int:
        if self.stack is not None:
            return len(self.stack)
        return self.store.layout(self.key).n_frames  # type: ignore[arg-type]

    def plane_at(self, data_point: Sequence[float] | np.ndarray | None) -> int:
        """The plane under napari's slider (``layer.world_to_data(dims.point)``)."""
        if self.frame_pos is None or data_point is None:
            return 0
        return int(np.clip(round(float(data_point[self.frame_pos])), 0, self.n_planes - 1))

    def target(self, plane: int) -> tuple[str, int]:
        """(image key, frame) of plane ``plane``; registers a folder's file on first use."""
        stack = self.stack
        if stack is None:
            return self.key, plane  # type: ignore[return-value]
        key = self._file_keys.get(plane)
        if key is None:
            path, frame = stack.source(plane)
            key = self.store.find_image(path=path) or self.store.add_image(path=path)
            self._file_keys[plane] = key
            return key, frame
        return key, stack.source(plane)[1]

    def known_target(self, plane: int) -> tuple[str, int] | None:
        """Like :meth:`target` but never registers (None: the file has no annotations)."""
        stack = self.stack
        if stack is None:
            return self.key, plane  # type: ignore[return-value]
        path, frame = stack.source(plane)
        key = self._file_keys.get(plane) or self.store.find_image(path=path)
        return (key, frame) if key is not None else None

    def planes(self) -> dict[tuple[str, int], int]:
        """(image key, frame) → plane index, for every plane already in the store."""
        out = {}
        for p in range(self.n_planes):
            t = self.known_target(p)
            if t is not None:
                out[t] = p
        return out

    def to_store(self, coords: np.ndarray) -> tuple[int, np.ndarray]:
        """Annotation-layer coordinates (n, ann_ndim) → (plane, (n, 2) y, x)."""
        c = np.asarray(coords, dtype=np.float64)
        plane = 0 if self.ann_ndim == 2 else int(np.clip(round(float(c[0, self.frame_pos])), 0, self.n_planes - 1))
        return plane, c[:, -2:]

    def to_layer(self, plane: int, yx: np.ndarray) -> np.ndarray:
        yx = np.asarray(yx, dtype=np.float64).reshape(-1, 2)
        if self.ann_ndim == 2:
            return yx
        lead = np.zeros((len(yx), self.ann_ndim - 2))
        lead[:, self.frame_pos] = plane
        return np.concatenate([lead, yx], axis=1)

    def plane_hw(self, plane: int) -> tuple[int, int]:
        if self.stack is not None:
            return tuple(self.stack.sizes[plane])  # type: ignore[return-value]
        lay = self.store.layout(self.key)  # type: ignore[arg-type]
        return lay.height, lay.width


def bind_layer(store: AnnotationStore, layer: Layer) -> Binding:
    """Register ``layer``'s image in the store (idempotent) and describe its axes."""
    data = layer.data
    rgb = bool(getattr(layer, "rgb", False))
    nd = layer.ndim  # napari's dimensions (an RGB axis excluded)
    if is_folder_stack(data):
        return Binding(layer, store, None, 0, nd)
    path = getattr(getattr(layer, "source", None), "path", None)
    from pathlib import Path

    if path is not None and Path(path).is_file():
        key = store.add_image(data, path=path, name=image_name(layer), rgb=rgb)
    else:
        key = store.add_image(data, name=image_name(layer), rgb=rgb, channel_axis=_channel_axis(layer))
    store.attach(key, data)
    lay = store.layout(key)
    if lay.frame_axis is None:  # one plane (channels, if any, on a napari axis): 2-D annotations
        return Binding(layer, store, key, None, 2)
    return Binding(layer, store, key, lay.frame_axis, nd)


def _channel_axis(layer: Layer) -> Any:
    """napari shows the leading axis of a (N, H, W) array as a slider of planes: read
    it as frames unless the layer names its channels (sample data, multichannel files)."""
    meta = layer.metadata or {}
    named = meta.get("channel_names") or (meta.get("cellclass_sample") or {}).get("channel_names")
    if not getattr(layer, "rgb", False) and layer.data.ndim == 3 and not named:
        return "none"
    return "auto"


def find_image_layer(viewer: Viewer, name: str) -> Any | None:
    from napari.layers import Image

    for layer in viewer.layers:
        if isinstance(layer, Image) and image_name(layer) == name:
            return layer
    return None


def annotation_layer(viewer: Viewer, image: str, kind: str) -> Any | None:
    for layer in viewer.layers:
        meta = layer.metadata.get(META) or {}
        if meta.get("image") == image and meta.get("kind") == kind:
            return layer
    return None


def class_colors(store: AnnotationStore) -> dict[str, tuple[float, float, float, float]]:
    return {c.name: hex_to_rgba(c.color) for c in store.classes}


# ------------------------------------------------------------------------ making layers
def make_layer(viewer: Viewer, b: Binding, kind: str, crop_size: int = 64) -> Any:
    """The Shapes (regions), Points (points) or Labels (pixels) layer of ``b``'s image."""
    if kind not in KINDS:
        raise ValueError(kind)
    existing = annotation_layer(viewer, image_name(b.layer), kind)
    if existing is not None:
        return existing
    place = {"scale": tuple(b.layer.scale)[-b.ann_ndim:], "translate": tuple(b.layer.translate)[-b.ann_ndim:],
             "metadata": {META: {"image": image_name(b.layer), "kind": kind,
                                 "title": f"{kind} annotations of '{image_name(b.layer)}'"}}}
    name = f"{kind} · {image_name(b.layer)}"  # the kind first: the layer list cuts long names
    if kind == "regions":
        layer = viewer.add_shapes(ndim=b.ann_ndim, name=name, edge_width=2, face_color="transparent",
                                  features={"id": np.zeros(0, int), "label": np.zeros(0, str)}, **place)
    elif kind == "points":
        layer = viewer.add_points(np.zeros((0, b.ann_ndim)), ndim=b.ann_ndim, name=name, symbol="square",
                                  size=crop_size, face_color="transparent", border_width=0.05,
                                  border_width_is_relative=True,
                                  features={"id": np.zeros(0, int), "label": np.zeros(0, str)}, **place)
    else:
        if b.ann_ndim > 3 or (b.stack is not None and b.stack.channel_axis == 1):
            raise DataError(f"{image_name(b.layer)}: pixel labels of a stack with channels are not supported",
                            "paint on a single multichannel image, or a stack of greyscale/RGB planes")
        shape = tuple(b.layer.data.shape[:-1] if getattr(b.layer, "rgb", False) else b.layer.data.shape)
        shape = shape[-b.ann_ndim:] if b.ann_ndim == 2 else shape
        layer = viewer.add_labels(np.zeros(shape, dtype=np.uint8), name=name, opacity=0.6, **place)
    return layer


# ------------------------------------------------------------------------ store → layers
def render_regions(b: Binding, layer: Layer) -> None:
    """Show the store's rectangles and polygons of ``b`` in its Shapes layer."""
    store, colors, planes = b.store, class_colors(b.store), b.planes()
    data, types, ids, labels, edge = [], [], [], [], []
    for it in store.items:
        p = planes.get((it.image, it.frame))
        if p is None or it.kind not in ("rectangle", "polygon"):
            continue
        if it.kind == "rectangle":
            y0, x0, y1, x1 = it.box
            yx = np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]])
        else:
            yx = np.array(it.vertices)
        data.append(b.to_layer(p, yx))
        types.append(it.kind)
        ids.append(it.id)
        labels.append(it.label)
        edge.append(colors.get(it.label, (1, 1, 1, 1)))
    with layer.events.data.blocker(), layer.events.set_data.blocker():
        layer.selected_data = set()
        layer.data = []
        if data:
            layer.add(data, shape_type=types, edge_color=edge, face_color=[TRANSPARENT] * len(data))
        layer.features = {"id": np.array(ids, dtype=int), "label": np.array(labels, dtype=object)}
    layer.refresh()


def render_points(b: Binding, layer: Layer) -> None:
    store, colors, planes = b.store, class_colors(b.store), b.planes()
    coords, ids, labels, edge, sizes = [], [], [], [], []
    for it in store.items:
        p = planes.get((it.image, it.frame))
        if p is None or it.kind != "point":
            continue
        coords.append(b.to_layer(p, np.array([it.center]))[0])
        ids.append(it.id)
        labels.append(it.label)
        edge.append(colors.get(it.label, (1, 1, 1, 1)))
        sizes.append(float(max(it.size)))
    with layer.events.data.blocker(), layer.events.set_data.blocker():
        layer.selected_data = set()
        layer.data = np.array(coords).reshape(-1, b.ann_ndim)
        layer.features = {"id": np.array(ids, dtype=int), "label": np.array(labels, dtype=object)}
        if coords:
            layer.size = np.array(sizes)
            layer.border_color = np.array(edge)
            layer.face_color = np.array([TRANSPARENT] * len(coords))
    layer.refresh()


def render_pixels(b: Binding, layer: Layer) -> None:
    """Fill the Labels layer with the store's painted masks (value = class position + 1)."""
    from napari.utils.colormaps import DirectLabelColormap

    store = b.store
    colors = {i + 1: hex_to_rgba(c.color) for i, c in enumerate(store.classes)}
    new = np.zeros_like(layer.data)
    for (key, frame), p in b.planes().items():
        mask = store.pixel_labels(key, frame)
        if mask is None:
            continue
        h, w = mask.shape
        if new.ndim == 2:
            new[:h, :w] = mask
        else:
            new[p, :h, :w] = mask
    # blocked: the controller reads set_data as napari's own undo/redo of a stroke
    with layer.events.set_data.blocker(), layer.events.paint.blocker():
        layer.colormap = DirectLabelColormap(color_dict={None: TRANSPARENT, 0: TRANSPARENT, **colors})
        if not np.array_equal(new, layer.data):
            layer.data = new


# ------------------------------------------------------------------------ layers → store
def sync_regions(b: Binding, layer: Layer, current: str) -> bool:
    """Write what changed in the Shapes layer to the store: new shapes get class
    ``current`` (or the class in their ``label`` feature), deleted ones are deleted,
    moved or reshaped ones replaced.  Returns True when the store changed."""
    return _sync(b, layer, current, ("rectangle", "polygon"), _shape_geometry)


def sync_points(b: Binding, layer: Layer, current: str, crop_size: int) -> bool:
    return _sync(b, layer, current, ("point",), lambda lyr, i: ("point", np.asarray(lyr.data[i])[None, :]), crop_size)


def _shape_geometry(layer: Layer, i: int) -> tuple[str, np.ndarray]:
    return layer.shape_type[i], np.asarray(layer.data[i])


def _sync(b: Binding, layer: Layer, current: str, kinds: tuple[str, ...], geometry: Any, crop_size: int = 64) -> bool:
    store = b.store
    planes = b.planes()
    mine = {it.id: it for it in store.items if it.kind in kinds and (it.image, it.frame) in planes}
    feats = layer.features
    ids = [int(v) if v == v else 0 for v in feats["id"]] if "id" in feats else [0] * len(layer.data)
    present = {i for i in ids if i in mine}
    changed = False
    gone = [i for i in mine if i not in present]
    if gone:
        store.delete(*gone)
        changed = True
    seen: set[int] = set()
    for n, item_id in enumerate(ids):
        kind, coords = geometry(layer, n)
        plane, yx = b.to_store(coords)
        old = mine.get(item_id)
        if old is not None and item_id not in seen:
            seen.add(item_id)
            if _same_geometry(old, kind, plane, yx, b):
                continue
            key, frame = b.target(plane)
            store.move_region(item_id, key, frame, kind, yx)  # the same annotation: its id stays
            changed = True
            continue
        label = _label_of(feats, n, current, store)  # a new shape (or a copy of one): the class it was drawn with
        key, frame = b.target(plane)
        if kind == "point":
            store.add_point(key, frame, label, yx[0], crop_size if old is None else old.size)
        elif kind in ("rectangle", "polygon"):
            store.add_shape(key, frame, label, kind, yx)
        else:
            raise DataError(f"a {kind} shape cannot be a region annotation", "draw rectangles or polygons")
        changed = True
    return changed


def _label_of(feats: Any, n: int, current: str, store: AnnotationStore) -> str:
    if "label" in feats:
        v = feats["label"].iloc[n]
        if isinstance(v, str) and v in store.class_names:
            return v
    return current


def _same_geometry(it: Item, kind: str, plane: int, yx: np.ndarray, b: Binding) -> bool:
    if b.known_target(plane) != (it.image, it.frame):
        return False
    if it.kind == "point":
        return np.allclose(yx[0], it.center)
    if it.kind == "rectangle":
        return kind == "rectangle" and np.allclose([yx[:, 0].min(), yx[:, 1].min(), yx[:, 0].max(), yx[:, 1].max()], it.box)
    return kind == "polygon" and len(yx) == len(it.vertices) and np.allclose(yx, it.vertices)


def sync_pixels(b: Binding, layer: Layer, planes: list[int]) -> None:
    """Store the painted labels of ``planes`` (cut to each file's own size in a folder stack)."""
    for p in planes:
        plane = np.asarray(layer.data if layer.data.ndim == 2 else layer.data[p])
        h, w = b.plane_hw(p)
        mask = plane[:h, :w]
        if not mask.any() and b.known_target(p) is None:
            continue
        key, frame = b.target(p)
        b.store.set_pixel_labels(key, frame, mask)
