"""Where an annotation document lives on disk, and writing it there safely.

:class:`DocumentFile` owns the path, the lock-protected compare-and-swap write
(the file must still hold what this store last read or wrote) and the
"unsaved" state; it is handed the document to write each time.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..atomicfile import describe_os_error, write_atomic
from . import filelock
from .document import AnnotationDocument
from .schema import AnnotationFileError, AnnotationSaveError


class DocumentFile:
    """One annotation file: ``path``, its masks and images folders, and writes to it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(os.path.abspath(path))
        #: sha256 of the file's content as this store last loaded or wrote it
        self.sha: str | None = None
        #: True while a change is only in memory (the last write failed)
        self.unsaved = False
        #: seconds the last write took (encode + fsync + rename)
        self.last_write_s = 0.0
        # (mtime_ns, size) when this store last read or wrote the file: a cheap first check
        self._stat: tuple[int, int] | None = None

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def masks_folder(self) -> Path:
        return self.folder / f"{self.path.stem}.masks"

    @property
    def images_folder(self) -> Path:
        return self.folder / "images"

    def read(self) -> AnnotationDocument:
        """Parse the file (under its lock, after removing a crashed writer's temporaries)."""
        try:
            with filelock.locked(self.path):
                filelock.remove_orphan_temporaries(self.path)
                raw = self.path.read_bytes()
            doc = AnnotationDocument.parse(raw, str(self.path))
        except OSError as err:
            raise AnnotationFileError(f"{self.path}: cannot be read ({describe_os_error(err)})",
                                      "check the permissions, or open another file") from None
        self.sha = filelock.sha256(raw)
        self._remember_stat()
        return doc

    def _remember_stat(self) -> None:
        try:
            st = self.path.stat()
            self._stat = (st.st_mtime_ns, st.st_size)
        except OSError:
            self._stat = None

    def changed_on_disk(self) -> bool:
        """Whether another program wrote the file since this store last read or wrote it."""
        try:
            st = self.path.stat()
        except OSError:
            return False  # unreadable now: the write will say so
        if (st.st_mtime_ns, st.st_size) == self._stat:
            return False
        return filelock.current_sha(self.path) != self.sha

    def write(self, doc: AnnotationDocument) -> None:
        """Write ``doc`` atomically; on failure the old file stays and :class:`AnnotationSaveError` says why."""
        t0 = time.perf_counter()
        data = doc.encode()
        try:
            with filelock.locked(self.path):
                # compare-and-swap under the lock: the content must still be what we last saw
                on_disk = filelock.current_sha(self.path)
                if on_disk is not None and on_disk != self.sha:
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
        self.sha = filelock.sha256(data)
        self._remember_stat()
        self.unsaved = False
        self.last_write_s = time.perf_counter() - t0

    def move_to(self, path: Path) -> None:
        """Point at a new file, not yet written (the next :meth:`write` creates it)."""
        self.path, self.sha, self._stat = Path(os.path.abspath(path)), None, None


def free_name(p: Path) -> Path:
    """``<stem>-new.json``, ``<stem>-new-2.json`` … : the first name beside ``p`` not taken."""
    n = 1
    while True:
        alt = p.with_name(f"{p.stem}-new{'' if n == 1 else f'-{n}'}{p.suffix or '.json'}")
        if not alt.exists():
            return alt
        n += 1
