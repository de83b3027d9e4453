"""The annotation document: everything one annotation file holds, as plain data.

:class:`AnnotationDocument` is what the file is (format, version, header fields,
classes, images, items) and nothing else: no path, no lock, no undo.  The store's
components (:mod:`.imageregistry`, :mod:`.labelling`, :mod:`.pixels`,
:mod:`.table`) each receive it explicitly and change it; :mod:`.docfile` writes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..errors import DataError
from .schema import (
    FORMAT,
    VERSION,
    ClassInfo,
    ImageRecord,
    Item,
    decode,
    encode,
    item_line,
    now,
)


class Snapshot(NamedTuple):
    """What an undo step restores (records are frozen, so tuples share them)."""

    classes: tuple[ClassInfo, ...]
    items: tuple[Item, ...]
    multilabel: bool
    #: restored too: ids taken by an undone or failed change are given back, so the
    #: ids a user sees stay consecutive (ids of deleted items are not reused)
    next_id: int


@dataclass
class AnnotationDocument:
    """The parsed content of an annotation file (format ``FORMAT``, ``version``)."""

    created: str
    multilabel: bool = False
    next_id: int = 1
    next_color: int = 0
    classes: list[ClassInfo] = field(default_factory=list)
    images: dict[str, ImageRecord] = field(default_factory=dict)
    items: list[Item] = field(default_factory=list)
    format: str = FORMAT
    version: int = VERSION
    # id(item) -> (item, its JSON line): items are frozen, so each is serialised once
    _lines: dict[int, tuple[Item, str]] = field(default_factory=dict, repr=False, compare=False)

    # ------------------------------------------------------------------ building
    @classmethod
    def empty(cls, multilabel: bool = False) -> AnnotationDocument:
        return cls(created=now(), multilabel=bool(multilabel))

    @classmethod
    def parse(cls, raw: bytes, where: str) -> AnnotationDocument:
        """Validate and parse a file's bytes (:class:`AnnotationFileError` names ``where``)."""
        return cls.from_parts(*decode(raw, where))

    @classmethod
    def from_parts(cls, head: dict[str, Any], classes: Sequence[ClassInfo], images: dict[str, ImageRecord],
                   items: Sequence[Item]) -> AnnotationDocument:
        """From :func:`~.schema.decode`'s parts (``head``: created, multilabel, next_id, next_color)."""
        return cls(created=head.get("created") or now(), multilabel=bool(head.get("multilabel", False)),
                   next_id=int(head.get("next_id", 1)), next_color=int(head.get("next_color", len(classes))),
                   classes=list(classes), images=dict(images), items=list(items))

    def encode(self) -> bytes:
        """The file's bytes (``modified`` = now)."""
        head = {"created": self.created, "modified": now(), "multilabel": self.multilabel,
                "next_id": self.next_id, "next_color": self.next_color}
        cache, lines = self._lines, {}
        for it in self.items:
            hit = cache.get(id(it))
            lines[id(it)] = hit if hit is not None and hit[0] is it else (it, item_line(it))
        self._lines = lines
        return encode(head, self.classes, self.images, self.items, [lines[id(it)][1] for it in self.items])

    # ------------------------------------------------------------------ undo support
    def snapshot(self) -> Snapshot:
        return Snapshot(tuple(self.classes), tuple(self.items), self.multilabel, self.next_id)

    def restore(self, snap: Snapshot) -> None:
        self.classes, self.items, self.multilabel = list(snap.classes), list(snap.items), snap.multilabel
        self.next_id = snap.next_id

    # ------------------------------------------------------------------ lookups shared by the components
    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    def class_index(self, name: str) -> int:
        for i, c in enumerate(self.classes):
            if c.name == name:
                return i
        raise DataError(f"no class named {name!r}", f"the classes are: {', '.join(self.class_names) or '(none yet)'}")

    def item(self, item_id: int) -> Item:
        for it in self.items:
            if it.id == item_id:
                return it
        raise DataError(f"no annotation with id {item_id}", "it may have been deleted already")

    def items_of(self, image: str, frame: int | None = None, kind: str | None = None) -> list[Item]:
        return [it for it in self.items if it.image == image and (frame is None or it.frame == frame)
                and (kind is None or it.kind == kind)]

    def new_item(self, kind: str, image: str, frame: int, labels: Sequence[str], **geometry: Any) -> Item:
        """A new item with the next id (the id is taken: ``next_id`` moves on)."""
        it = Item(self.next_id, kind, image, int(frame), tuple(labels), now(), **geometry)
        self.next_id += 1
        return it
