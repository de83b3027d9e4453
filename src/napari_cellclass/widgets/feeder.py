"""Add layers without freezing the viewer: one layer per event-loop turn.

Creating a napari layer costs tens of milliseconds on the main thread (vispy
nodes, its layer controls, the layer list row), and more when it becomes the
selected layer (the controls panel switches).  So: the layer data arrives ready
(made in the worker, contrast limits set), the docks add few layers (a class
axis instead of one layer per class), one per ``QTimer`` turn so paint and input
run between them, and without selecting them: the user's layer stays selected.
"""

from __future__ import annotations

import warnings
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
        layers = self.viewer.layers
        # napari selects an inserted layer (and rebuilds its controls panel); a map should not
        # take the selection from the image the user works on.  The switch is private in
        # napari 0.5-0.9 (it warns); where it is gone, napari's default (select it) applies.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            keep = getattr(layers, "_activate_on_insert", None)
            if isinstance(keep, bool):
                layers._activate_on_insert = False
        try:
            self.added.extend(upsert(self.viewer, ld) for ld in batch)
        finally:
            if isinstance(keep, bool):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)
                    layers._activate_on_insert = keep
        if self._todo:
            QTimer.singleShot(0, self._step)
        else:
            self._on_done(self.added)
