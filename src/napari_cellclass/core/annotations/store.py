"""The annotation store: a thin facade over the annotation document and the
components that change it.

    AnnotationDocument (document.py)  the file's content: classes, images, items, header
    DocumentFile       (docfile.py)   its path; atomic, locked, compare-and-swap writes
    History            (history.py)   the lock, undo steps, on_change listeners
    ImageRegistry      (imageregistry.py)  registering images, their pixels
    Labelling          (labelling.py) classes, image-level labels, regions
    PixelLabels        (pixels.py)    painted masks and their files
    Table              (table.py)     read-only queries: items, counts, table rows

Each component owns its own state and is handed the document explicitly; this
class only wires them and forwards its public methods.  Code that wants one part
reaches it as ``store.doc``, ``.file``, ``.history``, ``.registry``, ``.labelling``,
``.painting`` or ``.table``.  Every change is written atomically before the call
returns.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io.images import ChannelAxis, Layout
from . import imagerefs
from .docfile import DocumentFile, free_name
from .document import AnnotationDocument
from .history import UNDO_DEPTH, History
from .imageregistry import AnnotationWarning, ImageRegistry
from .labelling import Labelling
from .pixels import PixelLabels
from .schema import (
    AnnotationFileError,
    AnnotationSaveError,
    ClassInfo,
    ImageRecord,
    Item,
)
from .table import ItemRow, Table

__all__ = ["UNDO_DEPTH", "AnnotationStore", "AnnotationWarning"]


class AnnotationStore:
    """Classes, images and annotation items, written through to one JSON file.

    Open with :meth:`open`.  Every method that changes something writes the whole
    file atomically before it returns; if that write fails (read-only folder, full
    disk, file changed by another program) the change stays in memory, the old
    file stays intact, and :class:`AnnotationSaveError` says so — the next change
    (or :meth:`save`) tries again, and :meth:`save_as` moves to another file.
    """

    def __init__(self, file: DocumentFile, doc: AnnotationDocument) -> None:
        self.doc, self.file = doc, file
        self.history = History(doc, self._commit)
        self.registry = ImageRegistry(doc, self.file, self.history.lock)
        self.labelling = Labelling(doc, self.registry, self.history)
        self.painting = PixelLabels(doc, self.registry, self.history, self.file)
        self.table = Table(doc, self.registry)
        #: a message for the user set when opening (e.g. a damaged file was kept)
        self.notice: str | None = None

    def _commit(self, what: str) -> None:
        self.file.write(self.doc)
        # only after a successful write: a refused store's view of the masks is stale
        self.painting.collect_garbage()

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | os.PathLike, *, multilabel: bool = False, on_bad: str = "raise") -> AnnotationStore:
        """Open ``path``, or create it (empty, ``multilabel`` as given) when missing.

        A file that is not a readable annotation file is never overwritten:
        ``on_bad="raise"`` raises :class:`AnnotationFileError` naming it;
        ``on_bad="new_file"`` keeps it and starts a new file beside it
        (``<stem>-new.json``, ``-new-2`` …), saying so in :attr:`notice` and a warning.
        """
        if on_bad not in ("raise", "new_file"):
            raise ValueError("on_bad must be 'raise' or 'new_file'")
        p = Path(os.path.abspath(path))
        if p.is_dir():
            raise AnnotationFileError(f"{p}: is a folder", "give a file name for the annotations, e.g. annotations.json")
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            store = cls(DocumentFile(p), AnnotationDocument.empty(multilabel))
            store.save()
            return store
        file = DocumentFile(p)
        try:
            doc = file.read()
        except AnnotationFileError as err:
            if on_bad == "raise":
                raise
            alt = free_name(p)
            store = cls(DocumentFile(alt), AnnotationDocument.empty(multilabel))
            store.notice = (f"{p} could not be read and was left untouched ({err.problem}); "
                            f"new annotations are written to {alt}")
            warnings.warn(store.notice, AnnotationWarning, stacklevel=2)
            store.save()
            return store
        store = cls(file, doc)
        store.painting.collect_garbage()
        store.check_images()
        return store

    # ------------------------------------------------------------------ the file
    @property
    def path(self) -> Path:
        return self.file.path

    @property
    def unsaved(self) -> bool:
        """True while a change is only in memory (the last write failed)."""
        return self.file.unsaved

    @property
    def last_write_s(self) -> float:
        """Seconds the last write took (encode + fsync + rename)."""
        return self.file.last_write_s

    @property
    def folder(self) -> Path:
        return self.file.folder

    @property
    def masks_folder(self) -> Path:
        return self.file.masks_folder

    @property
    def images_folder(self) -> Path:
        return self.file.images_folder

    def save(self) -> None:
        """Write now (after a failed write, once the cause is fixed)."""
        with self.history.lock:
            self.file.write(self.doc)

    def save_as(self, path: str | os.PathLike) -> None:
        """Move the annotations to a new file: masks and saved images are copied,
        file paths re-expressed relative to the new folder.  The old file stays."""
        new = Path(os.path.abspath(path))
        with self.history.lock:
            if new.exists():
                raise AnnotationSaveError(f"{new}: already exists", "choose a new file name")
            new.parent.mkdir(parents=True, exist_ok=True)
            images = self.registry.relocated(new.parent)
            items = self.painting.relocated(new.parent / f"{new.stem}.masks")
            self.file.move_to(new)
            self.doc.images, self.doc.items = images, items
            self.history.clear()  # old snapshots point at the old folder's masks
            self.file.write(self.doc)

    # ------------------------------------------------------------------ undo, notifications
    def on_change(self, callback: Callable[[str], None]) -> Callable[[], None]:
        return self.history.on_change(callback)

    @property
    def can_undo(self) -> bool:
        return self.history.can_undo

    @property
    def undo_description(self) -> str | None:
        return self.history.undo_description

    def undo(self) -> str | None:
        return self.history.undo()

    # ------------------------------------------------------------------ images (ImageRegistry)
    @property
    def images(self) -> dict[str, ImageRecord]:
        return self.registry.images

    def image(self, key: str) -> ImageRecord:
        return self.registry.image(key)

    def layout(self, key: str) -> Layout:
        return self.registry.layout(key)

    def find_image(self, *, path: str | os.PathLike | None = None, name: str | None = None) -> str | None:
        return self.registry.find_image(path=path, name=name)

    def add_image(self, data: Any = None, *, path: str | os.PathLike | None = None, name: str | None = None,
                  channel_axis: ChannelAxis = "auto", rgb: bool | None = None) -> str:
        return self.registry.add_image(data, path=path, name=name, channel_axis=channel_axis, rgb=rgb)

    def attach(self, key: str, data: Any) -> None:
        self.registry.attach(key, data)

    def pixels(self, key: str) -> Any:
        return self.registry.pixels(key)

    def check_images(self) -> list[imagerefs.ImageProblem]:
        return self.registry.check_images()

    def accept_image_change(self, key: str) -> None:
        self.registry.accept_image_change(key)

    # ------------------------------------------------------------------ classes (Labelling)
    @property
    def classes(self) -> list[ClassInfo]:
        return self.labelling.classes

    @property
    def class_names(self) -> list[str]:
        return self.labelling.class_names

    @property
    def multilabel(self) -> bool:
        return self.labelling.multilabel

    def class_index(self, name: str) -> int:
        return self.labelling.class_index(name)

    def class_for_key(self, key: str | int) -> str | None:
        return self.labelling.class_for_key(key)

    def add_class(self, name: str, color: str | None = None) -> ClassInfo:
        return self.labelling.add_class(name, color)

    def rename_class(self, old: str, new: str) -> None:
        self.labelling.rename_class(old, new)

    def set_class_color(self, name: str, color: str) -> None:
        self.labelling.set_class_color(name, color)

    def move_class(self, name: str, index: int) -> None:
        self.labelling.move_class(name, index)

    def remove_class(self, name: str, *, reassign_to: str | None = None, delete_items: bool = False) -> int:
        return self.labelling.remove_class(name, reassign_to=reassign_to, delete_items=delete_items)

    def set_multilabel(self, multilabel: bool) -> None:
        self.labelling.set_multilabel(multilabel)

    # ------------------------------------------------------------------ labels and regions (Labelling)
    def label_image(self, image: str, frame: int, labels: str | int | Sequence[str | int], mode: str = "set") -> Item | None:
        return self.labelling.label_image(image, frame, labels, mode)

    def apply_key(self, image: str, frame: int, key: str | int) -> Item | None:
        return self.labelling.apply_key(image, frame, key)

    def add_rectangle(self, image: str, frame: int, cls: str | int, box: Sequence[float], obj: Any = None) -> Item:
        return self.labelling.add_rectangle(image, frame, cls, box, obj)

    def add_polygon(self, image: str, frame: int, cls: str | int, vertices: Sequence[Sequence[float]]) -> Item:
        return self.labelling.add_polygon(image, frame, cls, vertices)

    def add_point(self, image: str, frame: int, cls: str | int, center: Sequence[float], size: Sequence[int] | int) -> Item:
        return self.labelling.add_point(image, frame, cls, center, size)

    def add_shape(self, image: str, frame: int, cls: str | int, shape_type: str, vertices: Sequence[Sequence[float]]) -> Item:
        return self.labelling.add_shape(image, frame, cls, shape_type, vertices)

    def move_region(self, item_id: int, image: str, frame: int, shape_type: str,
                    vertices: Sequence[Sequence[float]]) -> Item:
        return self.labelling.move_region(item_id, image, frame, shape_type, vertices)

    def relabel(self, item_id: int, cls: str | int) -> Item:
        return self.labelling.relabel(item_id, cls)

    def delete(self, *item_ids: int) -> int:
        return self.labelling.delete(*item_ids)

    # ------------------------------------------------------------------ pixel labels (PixelLabels)
    def set_pixel_labels(self, image: str, frame: int, mask: Any) -> Item | None:
        return self.painting.set_pixel_labels(image, frame, mask)

    def pixel_labels(self, image: str, frame: int = 0) -> np.ndarray | None:
        return self.painting.pixel_labels(image, frame)

    # ------------------------------------------------------------------ queries (Table)
    @property
    def items(self) -> list[Item]:
        return self.table.items

    def item(self, item_id: int) -> Item:
        return self.table.item(item_id)

    def items_of(self, image: str, frame: int | None = None, kind: str | None = None) -> list[Item]:
        return self.table.items_of(image, frame, kind)

    def image_labels(self, image: str, frame: int = 0) -> tuple[str, ...]:
        return self.table.image_labels(image, frame)

    def is_labelled(self, image: str, frame: int = 0) -> bool:
        return self.table.is_labelled(image, frame)

    def counts(self) -> dict[str, int]:
        return self.table.counts()

    def counts_by_kind(self) -> dict[str, dict[str, int]]:
        return self.table.counts_by_kind()

    def rows(self) -> list[ItemRow]:
        return self.table.rows()


# The forwarding methods carry their component's documentation (help(), IDEs).
_PARTS = {"history": History, "registry": ImageRegistry, "labelling": Labelling,
          "painting": PixelLabels, "table": Table}


def _copy_docs() -> None:
    import inspect

    for name, member in vars(AnnotationStore).items():
        if name.startswith("_") or name == "open":
            continue
        for part in _PARTS.values():
            source = inspect.getattr_static(part, name, None)
            if source is None:
                continue
            doc = source.__doc__
            if isinstance(member, property) and doc and not member.__doc__:
                setattr(AnnotationStore, name, property(member.fget, member.fset, member.fdel, doc))
            elif callable(member) and doc and not member.__doc__:
                member.__doc__ = doc
            break


_copy_docs()
