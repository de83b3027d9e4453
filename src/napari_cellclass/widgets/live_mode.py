"""Live mode for the fine-tune tab: retrain the head in the background after each label.

A toggle, off by default.  When on, every change of the annotations restarts a short
timer (labelling ten frames in a row retrains once); when it fires and the labels
differ from those the last live model learnt, the fine-tune panel's own job runs
head-only on cached backbone features (``app.live``).  A change during a run stops
that run (it returns its best model so far) and starts another one after it.  The
result is the panel's pending model, as after pressing Fine-tune — the held-out
before/after line, Keep, Discard, Save — and it re-classifies the open images and
re-ranks "what to label next" through a preview session; only Keep makes it the
session's model, and Undo goes back.  Training runs in a worker thread, so the
viewer stays responsive.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import QCheckBox, QLabel, QVBoxLayout, QWidget

from ..app.finetune_jobs import rank_job
from ..app.jobs import classify_job
from ..app.live import (
    LiveSkip,
    labels_fingerprint,
    live_job,
    preview_session,
    reusing_features,
)

if TYPE_CHECKING:
    from ..app.live import LiveSkip
    from ..core.training.finetune import FineTuneOutcome
    from .annotation_next import NextToLabel
    from .finetune import FineTunePanel

DEBOUNCE_MS = 250  # quiet time after the last label before a retrain starts
#: while live mode is on, the UI thread waits at most this long for the GIL (Python's default is 5 ms):
#: every Qt → Python callback of the event loop re-takes the GIL, and while a retrain runs Python code
#: in its worker (copying the network, metrics) each of them waited up to 5 ms — tens per repaint
SWITCH_INTERVAL_S = 0.001
_live_widgets: set[int] = set()  # live toggles that are on (the settings below are the process's)
_saved_interval: list[float] = []


def responsive(widget_id: int, on: bool) -> None:
    """While any live toggle is on: a short GIL switch interval, and the objects that exist now
    frozen out of the garbage collector (``gc.freeze``).  A full collection of a napari process
    walks millions of objects with the GIL held — measured 1.5 s of frozen UI on a loaded CPU,
    triggered by the objects each retrain allocates; frozen, it walks only the new ones.
    Turning live mode off undoes both (``gc.unfreeze``: garbage among the frozen objects, e.g. a
    layer closed meanwhile, is collected again from then on)."""
    was = bool(_live_widgets)
    (_live_widgets.add if on else _live_widgets.discard)(widget_id)
    if _live_widgets and not was:
        _saved_interval.append(sys.getswitchinterval())
        sys.setswitchinterval(min(_saved_interval[-1], SWITCH_INTERVAL_S))
        gc.freeze()
    elif was and not _live_widgets:
        sys.setswitchinterval(_saved_interval.pop() if _saved_interval else 0.005)
        gc.unfreeze()


class LiveMode(QWidget):
    """The live toggle and its status line; drives ``panel`` (and ``next_widget``'s ranking)."""

    label_changed = Signal()  # the store's callback may come from any thread: hop to the Qt thread

    def __init__(self, panel: FineTunePanel, next_widget: NextToLabel | None, get_store: Callable[[], Any],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.panel, self.next_widget, self._get_store = panel, next_widget, get_store
        self.toggle = QCheckBox("live: retrain the head after each label (frozen backbone, in the background)")
        self.toggle.setChecked(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.toggle)
        layout.addWidget(self.status)
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(DEBOUNCE_MS)
        self.timer.timeout.connect(self.retrain)
        self.label_changed.connect(self._changed)
        self._store: Any = None
        self._unsubscribe: Callable[[], None] | None = None
        self._learnt: str | None = None  # fingerprint of the labels the last live model learnt
        self._running: str | None = None  # fingerprint the running retrain learns
        self._again = False
        self._outcome: Any = None  # the last live run's result, until its worker has finished
        self._first_change: float | None = None  # when the first label since the last update came
        self.latencies: list[float] = []  # label → re-classified open images, seconds
        self.retrains = 0
        self.toggle.toggled.connect(self._toggled)
        self.destroyed.connect(lambda *_: self._unwatch())
        key = id(self)
        self.destroyed.connect(lambda *_: responsive(key, False))

    @property
    def on(self) -> bool:
        return self.toggle.isChecked()

    @property
    def busy(self) -> bool:
        return self._running is not None

    # ------------------------------------------------------------------ watching the labels
    def _watch(self) -> None:
        store = self._get_store()
        if store is self._store:
            return
        self._unwatch()
        self._store = store
        if store is not None:
            self._unsubscribe = store.on_change(lambda _what: self.label_changed.emit())

    def _unwatch(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._unsubscribe, self._store = None, None

    def _toggled(self, on: bool) -> None:
        responsive(id(self), on)
        if on:
            self._watch()
            self.status.setText("live: retrains after each new or changed label")
            self._changed()
        else:
            self.timer.stop()
            self._unwatch()
            if self.busy:
                self.panel.controls.stop.set()  # the run ends with its best model so far
            self.status.setText("")

    def _changed(self) -> None:
        if not self.on:
            return
        if self._first_change is None:
            self._first_change = time.perf_counter()
        self.timer.start()  # restarts: one retrain after a burst of labels

    # ------------------------------------------------------------------ one retrain
    def retrain(self) -> Any:
        """Start a head-only retrain if the labels changed since the last one; returns the worker."""
        self._watch()  # another annotation file may have been opened
        store = self._store
        if not self.on or store is None:
            return None
        fingerprint = labels_fingerprint(store)
        if fingerprint == self._learnt and not self.busy:
            self._first_change = None
            return None
        if self.busy:  # stop it early (it returns its best model so far) and go again after it
            self._again = True
            self.panel.controls.stop.set()
            return None
        if self.panel.controls.running:  # the panel's own run or re-classification: try again shortly
            self.timer.start()
            return None
        self.panel.controls.stop.clear()
        self._running = fingerprint
        self.status.setText(f"live: retraining on {len(store.items)} label(s)…")
        worker = self.panel.controls.start(live_job, self.panel.session, store, self.panel.options(),
                                           self.panel.controls.stop, desc="live fine-tune", on_item=self.panel._event,
                                           on_done=self._trained, on_end=self._train_ended)
        if worker is None:
            self._running = None
            return None
        self.retrains += 1
        self.panel.curves.clear()
        return worker

    def _trained(self, outcome: FineTuneOutcome | LiveSkip) -> None:
        self._outcome = outcome  # followed up in _train_ended: the controls are free only then

    def _train_ended(self) -> None:
        learnt, self._running = self._running, None
        outcome, self._outcome = self._outcome, None
        if outcome is None:  # an error (notified by the controls) or a cancel
            self._after()
            return
        if isinstance(outcome, LiveSkip):
            self._learnt = learnt  # nothing to learn from these labels: wait for a change
            self._first_change = None
            self.status.setText(f"live: waiting for labels — {outcome.message}")
            self._after()
            return
        self._learnt = learnt if not outcome.cancelled else None  # a stopped run learnt part of them
        self.panel._done(outcome)  # the panel's pending model: before/after, Keep, Discard, Save
        preview = preview_session(self.panel.session, outcome.bundle)
        if self.panel.classify_open_layers(session=preview, on_end=lambda: self._shown(preview),
                                           job=reusing_features(classify_job)) is None:
            self._shown(preview)

    def _shown(self, preview: Any) -> None:
        """The open images show the live model's predictions: note the latency, re-rank, go on."""
        if self._first_change is not None:
            self.latencies.append(time.perf_counter() - self._first_change)
            self._first_change = None
        n_train = self.panel.outcome.n_train if self.panel.outcome is not None else 0
        took = f"{self.latencies[-1]:.1f} s after the label" if self.latencies else ""
        self.status.setText(f"live: model trained on {n_train} label(s), predictions updated {took}; "
                            "Keep makes it the session's model")
        if self.next_widget is not None and not self.next_widget.controls.running and not self._again:
            self.next_widget.rank(session=preview, job=reusing_features(rank_job))  # a ranking still running is kept; the next one follows
        self._after()

    def _after(self) -> None:
        if self._again and self.on:
            self._again = False
            self.timer.start()


__all__ = ["DEBOUNCE_MS", "SWITCH_INTERVAL_S", "LiveMode", "responsive"]
