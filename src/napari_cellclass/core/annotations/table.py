"""Read-only queries on an annotation document: its items, what the annotation
table shows (counts per class, one row per item)."""

from __future__ import annotations

from dataclasses import dataclass

from .document import AnnotationDocument
from .imageregistry import ImageRegistry
from .labelling import image_labels
from .schema import KINDS, Item


@dataclass(frozen=True)
class ItemRow:
    """One line of the table, with what is needed to jump to the item."""

    id: int
    kind: str
    labels: tuple[str, ...]
    image: str  # key
    image_name: str
    frame: int
    #: (y0, x0, y1, x1) in image pixels; the whole plane for image-level and pixel items
    bbox: tuple[float, float, float, float]
    center: tuple[float, float]
    created: str


class Table:
    """Queries on ``doc`` (``images`` gives the planes' sizes); changes nothing."""

    def __init__(self, doc: AnnotationDocument, images: ImageRegistry) -> None:
        self.doc, self.images = doc, images

    @property
    def items(self) -> list[Item]:
        return list(self.doc.items)

    def item(self, item_id: int) -> Item:
        return self.doc.item(item_id)

    def items_of(self, image: str, frame: int | None = None, kind: str | None = None) -> list[Item]:
        return self.doc.items_of(image, frame, kind)

    def image_labels(self, image: str, frame: int = 0) -> tuple[str, ...]:
        """The plane's image-level labels (empty when it has none)."""
        return image_labels(self.doc, image, frame)

    def counts(self) -> dict[str, int]:
        """Annotations per class, in class order (an item with two labels counts twice)."""
        out = {c.name: 0 for c in self.doc.classes}
        for it in self.doc.items:
            for c in it.labels:
                out[c] += 1
        return out

    def counts_by_kind(self) -> dict[str, dict[str, int]]:
        """``{class: {kind: n}}`` for every class and kind (zeros included)."""
        out = {c.name: dict.fromkeys(KINDS, 0) for c in self.doc.classes}
        for it in self.doc.items:
            for c in it.labels:
                out[c][it.kind] += 1
        return out

    def rows(self) -> list[ItemRow]:
        """One row per annotation, oldest first."""
        rows = []
        for it in self.doc.items:
            rec = self.doc.images[it.image]
            box = it.bbox()
            if box is None:
                h, w = self.images.layout(it.image).height, self.images.layout(it.image).width
                box = (0.0, 0.0, float(h - 1), float(w - 1))
            center = it.center if it.center is not None else ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
            rows.append(ItemRow(it.id, it.kind, it.labels, it.image, rec.name, it.frame, tuple(box), tuple(center), it.created))
        return rows

    def is_labelled(self, image: str, frame: int = 0) -> bool:
        """Whether the plane has any annotation (image-level, region or pixels)."""
        return any(it.image == image and it.frame == frame for it in self.doc.items)
