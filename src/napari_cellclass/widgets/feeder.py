"""Add many layers without freezing the viewer: one layer per event-loop turn.

Creating a napari layer costs tens of milliseconds on the main thread (vispy
nodes, thumbnails, the layer list); "all classes" on a large model adds dozens of
them.  Adding them one per ``QTimer.singleShot(0)`` lets paint and input events
run between layers, so the viewer keeps answering while maps arrive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QObject, QTimer

from ..viewer.layers import upsert

if TYPE_CHECKING:
    from napari import Viewer

LayerTuple = tuple[Any, dict[str, Any], str]


class LayerFeeder(QObject):
    """Upserts ``tuples`` into ``viewer``, ``per_turn`` per event-loop turn, then calls
    ``on_done(layers)``.  ``cancel()`` stops before the next layer."""

    def __init__(self, viewer: Viewer, tuples: Sequence[LayerTuple], on_done: Callable[[list[Any]], None],
                 per_turn: int = 1, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self._todo = list(tuples)
        self._on_done = on_done
        self._per_turn = max(1, int(per_turn))
        self.added: list[Any] = []
        self.cancelled = False
        QTimer.singleShot(0, self._step)

    @property
    def done(self) -> bool:
        return not self._todo or self.cancelled

    def cancel(self) -> None:
        self.cancelled = True

    def _step(self) -> None:
        if self.cancelled:
            return
        batch, self._todo = self._todo[: self._per_turn], self._todo[self._per_turn:]
        self.added.extend(upsert(self.viewer, ld) for ld in batch)
        if self._todo:
            QTimer.singleShot(0, self._step)
        else:
            self._on_done(self.added)
