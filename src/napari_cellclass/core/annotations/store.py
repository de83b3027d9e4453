"""The annotation store: opening, persistence and undo.  Classes and items change
through :class:`~.labelling.LabellingMixin`, images register through
:class:`~.imageregistry.ImagesMixin`; this module holds what makes every change
safe — each one is written atomically before the call returns."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..atomicfile import describe_os_error, write_atomic
from . import filelock, imagerefs, masks
from .imageregistry import AnnotationWarning, ImagesMixin
from .labelling import LabellingMixin
from .schema import (AnnotationFileError, AnnotationSaveError, ClassInfo, ImageRecord, Item, decode, encode, item_line, now)
from .table import TableMixin

UNDO_DEPTH = 100


class AnnotationStore(ImagesMixin, LabellingMixin, TableMixin):
    """Classes, images and annotation items, written through to one JSON file.

    Open with :meth:`open`.  Every method that changes something writes the whole
    file atomically before it returns; if that write fails (read-only folder, full
    disk, file changed by another program) the change stays in memory, the old
    file stays intact, and :class:`AnnotationSaveError` says so — the next change
    (or :meth:`save`) tries again, and :meth:`save_as` moves to another file.
    """

    def __init__(self, path: Path, doc: dict[str, Any], classes: list[ClassInfo],
                 images: dict[str, ImageRecord], items: list[Item]) -> None:
        self.path = Path(os.path.abspath(path))
        self._lock = threading.RLock()
        self._multilabel = bool(doc.get("multilabel", False))
        self._next_id = int(doc.get("next_id", 1))
        self._next_color = int(doc.get("next_color", len(classes)))
        self._created = doc.get("created") or now()
        self._classes = list(classes)
        self._images = dict(images)
        self._items = list(items)
        self._undo: list[tuple[str, tuple[Any, ...]]] = []
        self._live: dict[str, Any] = {}
        self._file_cache: dict[str, Any] = {}
        self._lines: dict[int, tuple[Item, str]] = {}
        #: sha256 of the file's content as this store last loaded or wrote it
        self._sha: str | None = None
        self._listeners: list[Callable[[str], None]] = []
        #: True while a change is only in memory (the last write failed)
        self.unsaved = False
        #: a message for the user set when opening (e.g. a damaged file was kept)
        self.notice: str | None = None
        #: seconds the last write took (encode + fsync + rename)
        self.last_write_s = 0.0

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
        if p.exists():
            try:
                with filelock.locked(p):
                    filelock.remove_orphan_temporaries(p)
                    raw = p.read_bytes()
                store = cls(p, *decode(raw, str(p)))
            except (AnnotationFileError, OSError) as err:
                if isinstance(err, OSError):
                    err = AnnotationFileError(f"{p}: cannot be read ({describe_os_error(err)})",
                                              "check the permissions, or open another file")
                if on_bad == "raise":
                    raise err from None
                alt = _free_name(p)
                store = cls(alt, {"multilabel": multilabel}, [], {}, [])
                store.notice = (f"{p} could not be read and was left untouched ({err.problem}); "
                                f"new annotations are written to {alt}")
                warnings.warn(store.notice, AnnotationWarning, stacklevel=2)
                store._write()
                return store
            store._sha = filelock.sha256(raw)
            store._collect_mask_garbage()
            store.check_images()
            return store
        p.parent.mkdir(parents=True, exist_ok=True)
        store = cls(p, {"multilabel": multilabel}, [], {}, [])
        store._write()
        return store

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def masks_folder(self) -> Path:
        return self.folder / f"{self.path.stem}.masks"

    @property
    def images_folder(self) -> Path:
        return self.folder / "images"

    def on_change(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(description)`` after every change; returns an unsubscribe."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    # ------------------------------------------------------------------ writing
    def _document(self) -> bytes:
        doc = {"created": self._created, "modified": now(), "multilabel": self._multilabel,
               "next_id": self._next_id, "next_color": self._next_color}
        # items are frozen: serialise each once and reuse its line while it lives
        cache, lines = self._lines, {}
        for it in self._items:
            hit = cache.get(id(it))
            lines[id(it)] = hit if hit is not None and hit[0] is it else (it, item_line(it))
        self._lines = lines
        return encode(doc, self._classes, self._images, self._items, [self._lines[id(it)][1] for it in self._items])

    def _write(self) -> None:
        t0 = time.perf_counter()
        data = self._document()
        try:
            with filelock.locked(self.path):
                # compare-and-swap under the lock: the content must still be what we last saw
                on_disk = filelock.current_sha(self.path)
                if on_disk is not None and on_disk != self._sha:
                    self.unsaved = True
                    raise AnnotationSaveError(
                        f"{self.path}: was changed by another program since it was opened here; not overwritten",
                        "your changes are kept in memory: save them to another file (Save as…), or reopen the file",
                    )
                write_atomic(self.path, data)
        except OSError as err:
            self.unsaved = True
            raise AnnotationSaveError(
                f"{self.path}: could not save the annotations ({describe_os_error(err)}); the previous file is intact",
                "your changes are kept in memory: free disk space or fix the permissions (the next change "
                "saves again), or save them to another file (Save as…)",
            ) from err
        self._sha = filelock.sha256(data)
        self.unsaved = False
        self.last_write_s = time.perf_counter() - t0

    def save(self) -> None:
        """Write now (after a failed write, once the cause is fixed)."""
        with self._lock:
            self._write()

    def save_as(self, path: str | os.PathLike) -> None:
        """Move the annotations to a new file: masks and saved images are copied,
        file paths re-expressed relative to the new folder.  The old file stays."""
        import shutil

        new = Path(os.path.abspath(path))
        with self._lock:
            if new.exists():
                raise AnnotationSaveError(f"{new}: already exists", "choose a new file name")
            new.parent.mkdir(parents=True, exist_ok=True)
            old_folder, old_masks = self.folder, self.masks_folder
            images = {}
            for key, rec in self._images.items():
                src = imagerefs.absolute(rec, old_folder)
                if rec.origin == "memory":
                    dst = new.parent / rec.path
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    if src.is_file() and not dst.exists():
                        shutil.copy2(src, dst)
                    images[key] = rec
                else:
                    images[key] = replace(rec, path=imagerefs.record_path(src, new.parent))
            new_masks = new.parent / f"{new.stem}.masks"
            items = []
            for it in self._items:
                if it.mask is not None:
                    dst = new_masks / Path(it.mask).name
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(old_masks / Path(it.mask).name, dst)
                    it = replace(it, mask=f"{new_masks.name}/{dst.name}")
                items.append(it)
            self.path, self._images, self._items = new, images, items
            self._undo.clear()  # old snapshots point at the old folder's masks
            self._sha = None
            self._write()

    @contextlib.contextmanager
    def _change(self, what: str) -> Iterator[None]:
        """Apply a change atomically in memory, push an undo step, write through."""
        with self._lock:
            snap = self._snapshot()
            try:
                yield
            except BaseException:
                self._restore(snap)
                raise
            self._undo.append((what, snap))
            del self._undo[:-UNDO_DEPTH]
            self._committed(what)

    def _committed(self, what: str) -> None:
        try:
            self._write()
            # only after a successful write: a refused store's view of the masks is stale
            self._collect_mask_garbage()
        finally:
            for cb in list(self._listeners):
                cb(what)

    def _snapshot(self) -> tuple[Any, ...]:
        return (tuple(self._classes), tuple(self._items), self._multilabel)

    def _restore(self, snap: tuple[Any, ...]) -> None:
        classes, items, multilabel = snap
        self._classes, self._items, self._multilabel = list(classes), list(items), multilabel

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def undo_description(self) -> str | None:
        return self._undo[-1][0] if self._undo else None

    def undo(self) -> str | None:
        """Undo the last change (written through); returns its description, or None."""
        with self._lock:
            if not self._undo:
                return None
            what, snap = self._undo.pop()
            self._restore(snap)
            self._committed(f"undo {what}")
            return what

    def _collect_mask_garbage(self) -> None:
        if not self.masks_folder.is_dir():
            return
        refs = [it.mask for it in self._items if it.mask]
        refs += [it.mask for _, (_, items, _) in self._undo for it in items if it.mask]
        masks.collect_garbage(self.masks_folder, refs, self.folder, min_age_s=masks.GARBAGE_AGE_S)

def _free_name(p: Path) -> Path:
    n = 1
    while True:
        alt = p.with_name(f"{p.stem}-new{'' if n == 1 else f'-{n}'}{p.suffix or '.json'}")
        if not alt.exists():
            return alt
        n += 1
