"""The records of an annotation file and their JSON form (format described in
``annotations/__init__.py`` and docs/annotations.md).

Records are frozen: a change makes a new record, so undo snapshots can share the
unchanged ones and a half-applied change never shows up in what is written.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..errors import DataError
from .palette import check_color

FORMAT = "napari-cellclass-annotations"
VERSION = 1
KINDS = ("image", "rectangle", "polygon", "point", "pixels")
REGION_KINDS = ("rectangle", "polygon", "point")


class AnnotationFileError(DataError):
    """An annotation file that cannot be read (corrupt, foreign, too new)."""


class AnnotationSaveError(DataError):
    """A change could not be written; it is kept in memory and the old file is intact."""


def check_class_name(name: Any) -> str:
    """A usable class name, stripped; :class:`DataError` otherwise.  Names become
    export folder names, so path separators, ``..`` and control characters are refused
    — also when they come from a hand-edited file."""
    if not isinstance(name, str) or not name.strip():
        raise DataError(f"class name {name!r} is empty", "type a name for the class")
    name = name.strip()
    bad = [ch for ch in ';/\\:*?"<>|' if ch in name] + (["control characters"] if any(ord(c) < 32 or ord(c) == 127 for c in name) else [])
    if bad or name in (".", ".."):
        raise DataError(f"class name {name!r} contains {', '.join(map(repr, bad)) or 'only dots'}",
                        "class names become folder names and ';'-joined CSV labels: use letters, digits, spaces, - and _")
    return name


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ClassInfo:
    name: str
    color: str


@dataclass(frozen=True)
class ImageRecord:
    """One annotated image.  ``key`` names it in items; ``path`` is where its pixels
    are: relative to the annotation file's folder (POSIX separators) when inside it,
    absolute otherwise."""

    key: str
    path: str
    name: str
    origin: str  # "file": the user's file; "memory": saved by us into images/
    shape: tuple[int, ...]
    dtype: str
    channel_axis: int | None
    hash: str
    size: int | None = None
    mtime_ns: int | None = None


@dataclass(frozen=True)
class ObjectRef:
    """A rectangle that labels one segmented object: its id in a label image, and that
    label image: ``path`` (relative to the annotation folder when inside it) when it
    came from a file, else ``None``; always the ``hash`` of its pixels and the ``name``
    of its layer, so a reopened session finds it among the open Labels layers."""

    label: int
    name: str
    hash: str
    path: str | None = None
    margin: int = 0


@dataclass(frozen=True)
class Item:
    """One annotation.  Coordinates are image pixels (row y, column x), pixel
    centres at integers, as in a napari layer with unit scale."""

    id: int
    kind: str
    image: str
    frame: int
    labels: tuple[str, ...]
    created: str
    box: tuple[float, float, float, float] | None = None  # rectangle: y0, x0, y1, x1
    vertices: tuple[tuple[float, float], ...] | None = None  # polygon: (y, x) ...
    center: tuple[float, float] | None = None  # point: y, x
    size: tuple[int, int] | None = None  # point: crop height, width
    mask: str | None = None  # pixels: mask file, relative to the annotation folder
    values: tuple[tuple[int, str], ...] = field(default=())  # pixels: mask value -> class
    obj: ObjectRef | None = None  # rectangle: the segmented object it labels (core.annotations.objects)

    @property
    def label(self) -> str:
        return self.labels[0]

    def bbox(self) -> tuple[float, float, float, float] | None:
        """(y0, x0, y1, x1) of a region, None for image-level and pixel items."""
        if self.box is not None:
            return self.box
        if self.vertices is not None:
            ys = [v[0] for v in self.vertices]
            xs = [v[1] for v in self.vertices]
            return (min(ys), min(xs), max(ys), max(xs))
        if self.center is not None and self.size is not None:
            h, w = self.size
            top = round(self.center[0]) - h // 2
            left = round(self.center[1]) - w // 2
            return (float(top), float(left), float(top + h - 1), float(left + w - 1))
        return None


# ------------------------------------------------------------------------ to JSON
def item_to_dict(it: Item) -> dict[str, Any]:
    d: dict[str, Any] = {"id": it.id, "kind": it.kind, "image": it.image, "frame": it.frame,
                         "labels": list(it.labels), "created": it.created}
    if it.box is not None:
        d["box"] = list(it.box)
    if it.vertices is not None:
        d["vertices"] = [list(v) for v in it.vertices]
    if it.center is not None:
        d["center"] = list(it.center)
    if it.size is not None:
        d["size"] = list(it.size)
    if it.mask is not None:
        d["mask"] = it.mask
        d["values"] = {str(v): c for v, c in it.values}
    if it.obj is not None:
        o = it.obj
        d["object"] = {"label": o.label, "margin": o.margin, "labels": {"name": o.name, "hash": o.hash, "path": o.path}}
    return d


def image_to_dict(im: ImageRecord) -> dict[str, Any]:
    return {"path": im.path, "name": im.name, "origin": im.origin, "shape": list(im.shape), "dtype": im.dtype,
            "channel_axis": im.channel_axis, "hash": im.hash, "size": im.size, "mtime_ns": im.mtime_ns}


def item_line(it: Item) -> str:
    """One item as the compact JSON line it has in the file."""
    return json.dumps(item_to_dict(it), separators=(",", ":"), allow_nan=False)


def encode(doc: dict[str, Any], classes: list[ClassInfo], images: dict[str, ImageRecord], items: list[Item],
           lines: list[str] | None = None) -> bytes:
    """The file's bytes; ``lines`` are the items' :func:`item_line` when already known."""
    out = {
        "format": FORMAT,
        "version": VERSION,
        **doc,
        "classes": [{"name": c.name, "color": c.color} for c in classes],
        "images": {k: image_to_dict(v) for k, v in images.items()},
    }
    # one item per line: readable, diff-able, and cheap to write for thousands
    head = json.dumps(out, indent=1, allow_nan=False)
    rows = lines if lines is not None else [item_line(i) for i in items]
    items = "[\n  " + ",\n  ".join(rows) + "\n ]" if rows else "[]"
    assert head.endswith("\n}")
    return (head[:-2] + ',\n "items": ' + items + "\n}\n").encode("utf-8")


# ---------------------------------------------------------------------- from JSON
class _Bad(Exception):
    pass


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise _Bad(what)


def _num(v: Any, what: str) -> float:
    _need(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v), f"{what} must be a number")
    return float(v)


def _int(v: Any, what: str) -> int:
    _need(isinstance(v, int) and not isinstance(v, bool), f"{what} must be an integer")
    return int(v)


def _pair(v: Any, what: str) -> tuple[float, float]:
    _need(isinstance(v, list) and len(v) == 2, f"{what} must be [y, x]")
    return (_num(v[0], what), _num(v[1], what))


def _item(d: Any, n: int) -> Item:
    where = f"items[{n}]"
    _need(isinstance(d, dict), f"{where} must be an object")
    kind = d.get("kind")
    _need(kind in KINDS, f"{where}.kind must be one of {KINDS}")
    labels = d.get("labels")
    _need(isinstance(labels, list) and all(isinstance(x, str) for x in labels) and labels, f"{where}.labels must be a non-empty list of class names")
    _need(isinstance(d.get("image"), str), f"{where}.image must be a string")
    _need(isinstance(d.get("created"), str), f"{where}.created must be a string")
    kw: dict[str, Any] = {}
    if kind == "rectangle":
        box = d.get("box")
        _need(isinstance(box, list) and len(box) == 4, f"{where}.box must be [y0, x0, y1, x1]")
        kw["box"] = tuple(_num(v, f"{where}.box") for v in box)
        if d.get("object") is not None:
            kw["obj"] = _object(d["object"], where)
    elif kind == "polygon":
        verts = d.get("vertices")
        _need(isinstance(verts, list) and len(verts) >= 3, f"{where}.vertices must hold at least 3 [y, x] pairs")
        kw["vertices"] = tuple(_pair(v, f"{where}.vertices") for v in verts)
    elif kind == "point":
        kw["center"] = _pair(d.get("center"), f"{where}.center")
        size = d.get("size")
        _need(isinstance(size, list) and len(size) == 2, f"{where}.size must be [height, width]")
        kw["size"] = (_int(size[0], f"{where}.size"), _int(size[1], f"{where}.size"))
    elif kind == "pixels":
        _need(isinstance(d.get("mask"), str), f"{where}.mask must be a file name")
        values = d.get("values")
        _need(isinstance(values, dict) and all(isinstance(c, str) for c in values.values()), f"{where}.values must map mask values to class names")
        try:
            kw["values"] = tuple(sorted((int(k), c) for k, c in values.items()))
        except ValueError:
            raise _Bad(f"{where}.values keys must be integers") from None
        kw["mask"] = d["mask"]
    return Item(_int(d.get("id"), f"{where}.id"), kind, d["image"], _int(d.get("frame"), f"{where}.frame"),
                tuple(labels), d["created"], **kw)


def _object(d: Any, where: str) -> ObjectRef:
    _need(isinstance(d, dict) and isinstance(d.get("labels"), dict), f"{where}.object must hold 'label' and 'labels'")
    ref = d["labels"]
    _need(isinstance(ref.get("name"), str) and isinstance(ref.get("hash"), str), f"{where}.object.labels needs a name and a hash")
    _need(ref.get("path") is None or isinstance(ref["path"], str), f"{where}.object.labels.path must be a string or null")
    label, margin = _int(d.get("label"), f"{where}.object.label"), _int(d.get("margin", 0), f"{where}.object.margin")
    _need(label > 0 and margin >= 0, f"{where}.object: the label must be > 0 and the margin >= 0")
    return ObjectRef(label, ref["name"], ref["hash"], ref.get("path"), margin)


def _image(key: str, d: Any) -> ImageRecord:
    where = f"images[{key!r}]"
    _need(isinstance(d, dict), f"{where} must be an object")
    shape = d.get("shape")
    _need(isinstance(shape, list) and all(isinstance(s, int) for s in shape), f"{where}.shape must be a list of integers")
    ca = d.get("channel_axis")
    _need(ca is None or isinstance(ca, int), f"{where}.channel_axis must be an integer or null")
    _need(d.get("origin") in ("file", "memory"), f"{where}.origin must be 'file' or 'memory'")
    for k in ("path", "name", "dtype", "hash"):
        _need(isinstance(d.get(k), str), f"{where}.{k} must be a string")
    return ImageRecord(key, d["path"], d["name"], d["origin"], tuple(shape), d["dtype"], ca, d["hash"], d.get("size"), d.get("mtime_ns"))


def decode(raw: bytes, path: str) -> tuple[dict[str, Any], list[ClassInfo], dict[str, ImageRecord], list[Item]]:
    """Parse and validate an annotation file; :class:`AnnotationFileError` names it."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise AnnotationFileError(
            f"{path}: is not a readable annotation file (not valid JSON: {err})",
            "it may be damaged or another program's file; it was left untouched — "
            "open another file, or restore it from a backup",
        ) from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise AnnotationFileError(
            f"{path}: is not a napari-cellclass annotation file (its 'format' is not {FORMAT!r})",
            "choose another file name for the annotations; this file was left untouched",
        )
    version = data.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise AnnotationFileError(
            f"{path}: annotation format version {version!r} is newer than this napari-cellclass reads ({VERSION})",
            "update napari-cellclass to open it; the file was left untouched",
        )
    try:
        _need(isinstance(data.get("classes"), list), "classes must be a list")
        classes = []
        for n, c in enumerate(data["classes"]):
            _need(isinstance(c, dict) and isinstance(c.get("name"), str) and c["name"].strip(), f"classes[{n}] needs a name")
            try:
                _need(check_class_name(c["name"]) == c["name"], f"classes[{n}]: the name {c['name']!r} has surrounding spaces")
                classes.append(ClassInfo(c["name"], check_color(c.get("color", ""))))
            except ValueError as err:
                raise _Bad(f"classes[{n}]: {err}") from None
        _need(len({c.name for c in classes}) == len(classes), "class names must be unique")
        _need(isinstance(data.get("images"), dict), "images must be an object")
        images = {k: _image(k, v) for k, v in data["images"].items()}
        _need(isinstance(data.get("items"), list), "items must be a list")
        items = [_item(d, n) for n, d in enumerate(data["items"])]
        names = {c.name for c in classes}
        for it in items:
            _need(it.image in images, f"item {it.id} refers to image {it.image!r} that is not listed")
            _need(set(it.labels) <= names, f"item {it.id} has label(s) {sorted(set(it.labels) - names)} that are not classes")
        _need(len({it.id for it in items}) == len(items), "item ids must be unique")
        doc = {"multilabel": bool(data.get("multilabel", False)),
               "next_id": _int(data.get("next_id", 1), "next_id"),
               "next_color": _int(data.get("next_color", len(classes)), "next_color"),
               "created": str(data.get("created", ""))}
    except _Bad as err:
        raise AnnotationFileError(
            f"{path}: the annotation file is damaged ({err})",
            "it was left untouched; fix it by hand or open another file",
        ) from None
    doc["next_id"] = max([doc["next_id"], *(it.id + 1 for it in items)])
    return doc, classes, images, items
