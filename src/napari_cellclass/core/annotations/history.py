"""Undo history and change notifications of an annotation store.

:class:`History` owns the store's lock, its undo steps and its listeners.  A
change runs inside :meth:`History.change`: the document is snapshotted, the
change applied, and on success the step is pushed and ``commit(what)`` (write
through, collect garbage) is called, then the listeners; on an exception the
snapshot is restored and nothing is pushed.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .document import AnnotationDocument, Snapshot

UNDO_DEPTH = 100


@dataclass
class UndoStep:
    what: str
    snapshot: Snapshot
    #: mask file (relative path) -> the bytes it held when this step was taken; filled
    #: in when a later paint stroke overwrites that file (see :mod:`.pixels`)
    mask_bytes: dict[str, bytes] = field(default_factory=dict)


class History:
    """Undo steps of ``doc`` (at most :data:`UNDO_DEPTH`) and the ``on_change`` listeners."""

    def __init__(self, doc: AnnotationDocument, commit: Callable[[str], None]) -> None:
        self.doc = doc
        self.lock = threading.RLock()
        self._commit = commit
        self._steps: list[UndoStep] = []
        self._listeners: list[Callable[[str], None]] = []
        #: called with the step about to be undone, before its snapshot is restored
        #: (puts overwritten mask files back); an exception leaves the step in place
        self.before_restore: Callable[[UndoStep], None] | None = None

    # ------------------------------------------------------------------ listeners
    def on_change(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(description)`` after every change; returns an unsubscribe."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def notify(self, what: str) -> None:
        for cb in list(self._listeners):
            cb(what)

    # ------------------------------------------------------------------ changes
    @contextlib.contextmanager
    def change(self, what: str) -> Iterator[None]:
        """Apply a change atomically in memory, push an undo step, write through."""
        with self.lock:
            snap = self.doc.snapshot()
            try:
                yield
            except BaseException:
                self.doc.restore(snap)
                raise
            self._steps.append(UndoStep(what, snap))
            del self._steps[:-UNDO_DEPTH]
            self._committed(what)

    def _committed(self, what: str) -> None:
        try:
            self._commit(what)
        finally:
            self.notify(what)

    @property
    def can_undo(self) -> bool:
        return bool(self._steps)

    @property
    def undo_description(self) -> str | None:
        return self._steps[-1].what if self._steps else None

    def undo(self) -> str | None:
        """Undo the last change (written through); returns its description, or None."""
        with self.lock:
            if not self._steps:
                return None
            step = self._steps[-1]
            if self.before_restore is not None:
                self.before_restore(step)
            self._steps.pop()
            self.doc.restore(step.snapshot)
            self._committed(f"undo {step.what}")
            return step.what

    @property
    def steps(self) -> list[UndoStep]:
        """The undo steps, oldest first (live list: components may annotate them)."""
        return self._steps

    def clear(self) -> None:
        self._steps.clear()
