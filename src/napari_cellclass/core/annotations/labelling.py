"""Changing classes, image-level labels and regions of an annotation document.

Every public method of :class:`Labelling` validates first, then changes the
document inside ``history.change``, which writes the file through and records one
undo step.  Pixel labels are :mod:`.pixels`; read-only queries are :mod:`.table`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ..errors import DataError
from ..io import crops
from ..io.images import Layout
from .document import AnnotationDocument
from .history import History
from .imageregistry import ImageRegistry
from .palette import check_color, default_color
from .schema import REGION_KINDS, ClassInfo, Item
from .schema import check_class_name as _check_name

IMAGE_MODES = ("set", "toggle", "add", "remove")
SHAPE_TYPES = ("rectangle", "polygon")


class Labelling:
    """Classes, image labels and regions of ``doc``; images are looked up in ``images``."""

    def __init__(self, doc: AnnotationDocument, images: ImageRegistry, history: History) -> None:
        self.doc, self.images, self.history = doc, images, history

    # ------------------------------------------------------------------ classes
    @property
    def classes(self) -> list[ClassInfo]:
        """The classes in order; class ``i`` has keyboard shortcut ``i + 1`` (1–9)."""
        return list(self.doc.classes)

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.doc.classes]

    @property
    def multilabel(self) -> bool:
        return self.doc.multilabel

    def class_index(self, name: str) -> int:
        return self.doc.class_index(name)

    def class_for_key(self, key: str | int) -> str | None:
        """Keyboard shortcut ('1'..'9') → class name, None if no class has that key."""
        try:
            n = int(key)
        except (TypeError, ValueError):
            return None
        return self.doc.classes[n - 1].name if 1 <= n <= min(9, len(self.doc.classes)) else None

    def add_class(self, name: str, color: str | None = None) -> ClassInfo:
        name = _check_name(name)
        if any(c.name.casefold() == name.casefold() for c in self.doc.classes):
            raise DataError(f"a class named {name!r} exists already", "choose another name")
        with self.history.change(f"add class {name}"):
            info = ClassInfo(name, check_color(color) if color else default_color(self.doc.next_color))
            self.doc.next_color += 1
            self.doc.classes.append(info)
        return info

    def rename_class(self, old: str, new: str) -> None:
        """Rename a class; every item labelled ``old`` is relabelled ``new``."""
        i = self.class_index(old)
        new = _check_name(new)
        if new == old:
            return
        if any(c.name.casefold() == new.casefold() and c.name != old for c in self.doc.classes):
            raise DataError(f"a class named {new!r} exists already", "choose another name, or remove one of the two classes")

        def fix(it: Item) -> Item:
            labels = tuple(new if c == old else c for c in it.labels)
            values = tuple((v, new if c == old else c) for v, c in it.values)
            return replace(it, labels=labels, values=values) if (labels, values) != (it.labels, it.values) else it

        with self.history.change(f"rename class {old} to {new}"):
            self.doc.classes[i] = replace(self.doc.classes[i], name=new)
            self.doc.items = [fix(it) for it in self.doc.items]

    def set_class_color(self, name: str, color: str) -> None:
        i = self.class_index(name)
        with self.history.change(f"colour of {name}"):
            self.doc.classes[i] = replace(self.doc.classes[i], color=check_color(color))

    def move_class(self, name: str, index: int) -> None:
        """Reorder (changes keyboard shortcuts and export class indices, not labels)."""
        i = self.class_index(name)
        if not 0 <= index < len(self.doc.classes):
            raise DataError(f"position {index} does not exist", f"use 0..{len(self.doc.classes) - 1}")
        with self.history.change(f"move class {name}"):
            self.doc.classes.insert(index, self.doc.classes.pop(i))

    def remove_class(self, name: str, *, reassign_to: str | None = None, delete_items: bool = False) -> int:
        """Remove a class.  Its items must be dealt with explicitly: ``reassign_to``
        another class, or ``delete_items=True`` (multi-label items lose that label and
        are deleted only when no label is left; pixel masks forget that value).
        Returns how many items were changed or deleted."""
        self.class_index(name)
        if reassign_to is not None:
            self.class_index(reassign_to)
            if reassign_to == name or delete_items:
                raise DataError("reassign_to must name another class, and excludes delete_items", "pick one of the two")
        affected = [it for it in self.doc.items if name in it.labels]
        if affected and reassign_to is None and not delete_items:
            raise DataError(f"class {name!r} still has {len(affected)} annotation(s)",
                            "reassign them to another class (reassign_to=...) or delete them (delete_items=True)")

        def fix(it: Item) -> Item | None:
            if name not in it.labels:
                return it
            if reassign_to is not None:
                labels = tuple(dict.fromkeys(reassign_to if c == name else c for c in it.labels))
                values = tuple((v, reassign_to if c == name else c) for v, c in it.values)
            else:
                labels = tuple(c for c in it.labels if c != name)
                values = tuple((v, c) for v, c in it.values if c != name)
            if not labels or (not self.doc.multilabel and it.kind == "image" and len(labels) != 1):
                return None
            return replace(it, labels=labels, values=values)

        with self.history.change(f"remove class {name}"):
            self.doc.classes = [c for c in self.doc.classes if c.name != name]
            self.doc.items = [f for it in self.doc.items if (f := fix(it)) is not None]
        return len(affected)

    def set_multilabel(self, multilabel: bool) -> None:
        if not multilabel and any(it.kind == "image" and len(it.labels) > 1 for it in self.doc.items):
            raise DataError("some images carry several labels", "remove the extra labels before switching to single-label")
        with self.history.change("multi-label" if multilabel else "single-label"):
            self.doc.multilabel = bool(multilabel)

    # ------------------------------------------------------------------ image-level labels

    def label_image(self, image: str, frame: int, labels: str | int | Sequence[str | int], mode: str = "set") -> Item | None:
        """Give an image (one frame of a stack) image-level label(s).

        ``mode``: ``"set"`` replaces the labels; ``"toggle"``/``"add"``/``"remove"``
        change one class in the current set (multi-label).  In a single-label store
        ``toggle`` replaces the label, or removes it when it is the same class.
        Returns the new item, or None when no label is left.
        """
        if mode not in IMAGE_MODES:
            raise DataError(f"unknown mode {mode!r}", f"use one of {', '.join(IMAGE_MODES)}")
        check_target(self.images, image, frame)
        given = [labels] if isinstance(labels, (str, int, np.integer)) else list(labels)
        wanted = [check_class(self.doc, c) for c in given]
        old = image_labels(self.doc, image, frame)
        if mode == "set":
            new = tuple(dict.fromkeys(wanted))
        elif mode == "toggle" and not self.doc.multilabel:
            new = () if tuple(wanted) == old else tuple(wanted)
        elif mode in ("add", "toggle") and not (mode == "toggle" and set(wanted) <= set(old)):
            new = tuple(dict.fromkeys([*old, *wanted]))
        else:
            new = tuple(c for c in old if c not in wanted)
        if not self.doc.multilabel and len(new) > 1:
            raise DataError(f"{len(new)} labels for one image in a single-label class list",
                            "give one class, or switch the class list to multi-label")
        new = tuple(c for c in self.class_names if c in new)  # class order, whatever the click order
        if new == old:
            return self.doc.items_of(image, frame, "image")[0] if old else None
        with self.history.change(f"label {image} frame {frame}: {', '.join(new) or 'none'}"):
            before = self.doc.items_of(image, frame, "image")
            item = None
            if new and before:  # relabelled: the same annotation (same id, same place) with new labels
                item = replace(before[0], labels=new)
                self.doc.items = [item if it is before[0] else it for it in self.doc.items]
            elif new:
                item = self.doc.new_item("image", image, frame, new)
                self.doc.items.append(item)
            self.doc.items = [it for it in self.doc.items if it is item or not any(it is b for b in before)]
        return item

    def apply_key(self, image: str, frame: int, key: str | int) -> Item | None:
        """What a number key does: toggle (multi-label) or set/unset (single-label) class ``key``."""
        cls = self.class_for_key(key)
        if cls is None:
            raise DataError(f"no class has the key {key!r}", f"there are {len(self.doc.classes)} classes (keys 1–{min(9, len(self.doc.classes))})")
        return self.label_image(image, frame, cls, mode="toggle")

    # ------------------------------------------------------------------ regions
    def _add_region(self, kind: str, image: str, frame: int, cls: str | int, geometry: dict[str, Any],
                    replaces: Item | None = None) -> Item:
        """Validate and add a region, or (``replaces``) put that one in its new place."""
        layout = check_target(self.images, image, frame)
        name = check_class(self.doc, cls)
        for v in np.ravel([g for k, g in geometry.items() if g is not None and k != "obj"]):
            if not math.isfinite(float(v)):
                raise DataError(f"the {kind} has a non-finite coordinate", "draw it again")
        probe = Item(0, kind, image, int(frame), (name,), "", **geometry)
        if kind == "point":
            crops.point_window(probe.center, probe.size)
            cy, cx = (math.floor(c + 0.5) for c in probe.center)
            inside = 0 <= cy < layout.height and 0 <= cx < layout.width
        else:
            inside = crops.box_slices(probe.bbox(), layout.height, layout.width) is not None
        if not inside:
            raise DataError(f"the {kind} lies outside the {layout.height}x{layout.width} image",
                            "draw it on the image (coordinates are image pixels: row y, column x)")
        if replaces is not None:  # moved or reshaped: the same annotation (id, class, age, place in the list)
            with self.history.change(f"move {replaces.kind} {replaces.id}"):
                item = Item(replaces.id, kind, image, int(frame), replaces.labels, replaces.created, **geometry)
                self.doc.items = [item if it is replaces else it for it in self.doc.items]
            return item
        with self.history.change(f"add {kind} ({name})"):
            item = self.doc.new_item(kind, image, frame, (name,), **geometry)
            self.doc.items.append(item)
        return item

    def add_rectangle(self, image: str, frame: int, cls: str | int, box: Sequence[float], obj: Any = None) -> Item:
        """Axis-aligned box ``(y0, x0, y1, x1)`` in image pixels; ``obj``: the segmented
        object it labels (a schema.ObjectRef, see core.annotations.objects)."""
        return self._add_region("rectangle", image, frame, cls,
                                {**rectangle_geometry(box), **({"obj": obj} if obj is not None else {})})

    def add_polygon(self, image: str, frame: int, cls: str | int, vertices: Sequence[Sequence[float]]) -> Item:
        return self._add_region("polygon", image, frame, cls, polygon_geometry(vertices))

    def add_point(self, image: str, frame: int, cls: str | int, center: Sequence[float], size: Sequence[int] | int) -> Item:
        """A point ``(y, x)`` whose training sample is the ``size`` (h, w) crop around it."""
        return self._add_region("point", image, frame, cls, point_geometry(center, size))

    def add_shape(self, image: str, frame: int, cls: str | int, shape_type: str, vertices: Sequence[Sequence[float]]) -> Item:
        """A napari Shapes entry (vertices as (y, x) image pixels, frame axis removed).
        Rotated rectangles are stored as polygons."""
        kind, geometry = shape_geometry(shape_type, vertices)
        return self._add_region(kind, image, frame, cls, geometry)

    def move_region(self, item_id: int, image: str, frame: int, shape_type: str,
                    vertices: Sequence[Sequence[float]]) -> Item:
        """Put region ``item_id`` in a new place or outline, keeping its id and class (one
        undo step): a napari Shapes entry as in :meth:`add_shape`, or for a point
        ``shape_type="point"`` and ``vertices=[(y, x)]`` (its crop size stays)."""
        old = self.doc.item(item_id)
        if old.kind not in REGION_KINDS:
            raise DataError(f"annotation {item_id} is a {old.kind} annotation, not a region", "move a rectangle, polygon or point")
        if shape_type == "point":
            kind, geometry = "point", point_geometry(np.asarray(vertices, dtype=np.float64).reshape(-1)[:2], old.size or 1)
        else:
            kind, geometry = shape_geometry(shape_type, vertices)
        return self._add_region(kind, image, frame, old.label, geometry, replaces=old)

    def relabel(self, item_id: int, cls: str | int) -> Item:
        """Give one region (or single-label image) annotation another class."""
        it = self.doc.item(item_id)
        name = check_class(self.doc, cls)
        if it.kind == "pixels":
            raise DataError("a pixel annotation holds several classes", "repaint it in the Labels layer")
        with self.history.change(f"relabel {it.kind} {item_id} as {name}"):
            new = replace(it, labels=(name,))
            self.doc.items = [new if x.id == item_id else x for x in self.doc.items]
        return new

    def delete(self, *item_ids: int) -> int:
        """Delete annotations by id; returns how many were deleted."""
        ids = {int(i) for i in item_ids}
        missing = ids - {it.id for it in self.doc.items}
        if missing:
            raise DataError(f"no annotation with id(s) {sorted(missing)}", "they may have been deleted already")
        if not ids:
            return 0
        with self.history.change(f"delete {len(ids)} annotation(s)"):
            self.doc.items = [it for it in self.doc.items if it.id not in ids]
        return len(ids)


# ---------------------------------------------------------------------- checks shared with .pixels
def check_target(images: ImageRegistry, image: str, frame: int) -> Layout:
    """The image's layout, once ``frame`` is known to be one of its planes."""
    layout = images.layout(image)
    if not 0 <= int(frame) < layout.n_frames:
        raise DataError(f"{images.image(image).name}: frame {frame} does not exist (it has {layout.n_frames})",
                        "label a frame of the stack")
    return layout


def check_class(doc: AnnotationDocument, cls: str | int) -> str:
    """A class given by name or position → its name (:class:`DataError` when there is none)."""
    if isinstance(cls, (int, np.integer)) and not isinstance(cls, bool):
        if not 0 <= int(cls) < len(doc.classes):
            raise DataError(f"class index {cls} does not exist", f"use 0..{len(doc.classes) - 1}")
        return doc.classes[int(cls)].name
    doc.class_index(cls)
    return cls


def rectangle_geometry(box: Sequence[float]) -> dict[str, Any]:
    y0, x0, y1, x1 = (float(v) for v in box)
    return {"box": (min(y0, y1), min(x0, x1), max(y0, y1), max(x0, x1))}


def polygon_geometry(vertices: Sequence[Sequence[float]]) -> dict[str, Any]:
    v = np.asarray(vertices, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 2 or len(v) < 3:
        raise DataError(f"a polygon needs at least 3 (y, x) vertices, got an array of shape {v.shape}", "draw it again")
    return {"vertices": tuple((float(a), float(b)) for a, b in v)}


def point_geometry(center: Sequence[float], size: Sequence[int] | int) -> dict[str, Any]:
    hw = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    return {"center": (float(center[0]), float(center[1])), "size": hw}


def shape_geometry(shape_type: str, vertices: Sequence[Sequence[float]]) -> tuple[str, dict[str, Any]]:
    """A napari Shapes entry → (kind, geometry); a rotated rectangle is a polygon."""
    v = np.asarray(vertices, dtype=np.float64)
    if shape_type == "rectangle" and len(v) == 4:
        ys, xs = np.unique(np.round(v[:, 0], 6)), np.unique(np.round(v[:, 1], 6))
        if len(ys) <= 2 and len(xs) <= 2:
            return "rectangle", rectangle_geometry((v[:, 0].min(), v[:, 1].min(), v[:, 0].max(), v[:, 1].max()))
        return "polygon", polygon_geometry(v)
    if shape_type == "polygon":
        return "polygon", polygon_geometry(v)
    raise DataError(f"a {shape_type!r} shape cannot be a region annotation", f"draw a {' or '.join(SHAPE_TYPES)}")


def image_labels(doc: AnnotationDocument, image: str, frame: int = 0) -> tuple[str, ...]:
    its = doc.items_of(image, frame, "image")
    return its[0].labels if its else ()
