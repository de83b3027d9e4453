"""Run a job generator off the Qt thread: napari progress bar, cancel, notifications.

Every dock run goes through :class:`JobControls`: a Run and a Cancel button and a
status line.  The job (a generator from :mod:`.jobs`) runs in a napari
``GeneratorWorker``; each yielded :class:`~.jobs.Step` advances a napari progress
bar and hands its ``item`` to the dock on the main thread.  Errors never escape as
tracebacks: a :class:`~napari_cellclass.core.errors.CellclassError` becomes a
notification with its message, anything else a notification naming the error
(with the traceback in the log).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Generator
from typing import Any

from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils.notifications import show_info

from ..viewer.notify import error_message, notify_error
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

logger = logging.getLogger(__name__)


def guard_torch_import() -> None:
    """Keep torch from loading Triton inside napari.

    Triton ships its own LLVM; loading it into a process whose OpenGL driver already
    loaded Mesa's LLVM (llvmpipe under Xvfb, most Intel/AMD Linux drivers) crashes
    the process with a segmentation fault.  napari creates its OpenGL context long
    before a dock first imports torch, so the import must not reach Triton.  torch
    treats a Triton that cannot be imported as absent; napari-cellclass never uses
    ``torch.compile``, the only feature that needs it.
    """
    if "triton" not in sys.modules:
        sys.modules["triton"] = None  # type: ignore[assignment]  # "import triton" -> ImportError


guard_torch_import()  # at import: a dock module is imported only inside napari


class ClosingWorker(GeneratorWorker):
    """A generator worker that closes its generator in the worker thread when it stops.

    napari's cancel (``worker.quit()``) just stops iterating; the generator would be
    closed later by garbage collection in whatever thread drops it, releasing the
    model's lock from the wrong thread.  Closing it here runs every ``finally`` and
    ``with`` exit of the job where it started.
    """

    def work(self) -> Any:
        try:
            return super().work()
        finally:
            with contextlib.suppress(Exception):
                self._gen.close()


class JobControls(QWidget):
    """Run/Cancel buttons and a status line for one job at a time."""

    run_requested = Signal()

    def __init__(self, run_text: str = "Run", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.run_button = QPushButton(run_text)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.run_button, 1)
        row.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.status)
        self.worker: GeneratorWorker | None = None
        self.run_button.clicked.connect(self.run_requested)
        self.cancel_button.clicked.connect(self.cancel)

    @property
    def running(self) -> bool:
        return self.worker is not None

    def start(
        self,
        job: Callable[..., Generator[Any, None, Any]],
        *args: Any,
        desc: str,
        on_item: Callable[[Any], None] | None = None,
        on_done: Callable[[Any], None] | None = None,
        on_end: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> GeneratorWorker | None:
        """Start ``job(*args, **kwargs)`` in a worker; one at a time per controls."""
        if self.worker is not None:
            show_info(f"{desc}: a run is still in progress; wait for it or press Cancel")
            return None

        ended = {"status": False}  # after cancel/error, late progress must not overwrite the status

        def yielded(step: Any) -> None:
            # napari's progress bar processes events when it changes, so later signals
            # may run inside this handler: status and results first, the bar last
            if not ended["status"]:
                if step.message:
                    self.status.setText(step.message)
                elif step.total:
                    self.status.setText(f"{desc}: {step.done}/{step.total}")
            if step.item is not None and on_item is not None:
                self._guarded(on_item, step.item)
            pbar = getattr(worker, "pbar", None)
            if pbar is not None:
                if step.total and pbar.total != step.total:
                    pbar.total = step.total
                if step.message:
                    pbar.set_description(f"{desc}: {step.message}")
                if step.done > pbar.n:
                    pbar.update(step.done - pbar.n)

        def returned(value: Any) -> None:
            self.status.setText(f"{desc}: done")
            if on_done is not None:
                self._guarded(on_done, value)

        def errored(err: BaseException) -> None:
            ended["status"] = True
            self.status.setText(error_message(err))
            notify_error(err)

        def aborted() -> None:
            ended["status"] = True
            self.status.setText(f"{desc}: cancelled")
            show_info(f"{desc} was cancelled")

        def finished() -> None:
            self.worker = None
            self.run_button.setEnabled(True)
            self.cancel_button.setEnabled(False)
            if on_end is not None:
                self._guarded(on_end)

        guard_torch_import()
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText(f"{desc}: starting")
        worker = create_worker(
            job, *args,
            _progress={"desc": desc, "total": 0},
            _worker_class=ClosingWorker,
            _ignore_errors=True,
            _start_thread=False,
            **kwargs,
        )
        worker.yielded.connect(yielded)
        worker.returned.connect(returned)
        worker.errored.connect(errored)
        worker.aborted.connect(aborted)
        worker.finished.connect(finished)
        self.worker = worker
        worker.start()
        return worker

    def cancel(self) -> None:
        """Stop the running job at its next step (between batches)."""
        if self.worker is not None and self.cancel_button.isEnabled():
            self.status.setText("cancelling…")
            self.cancel_button.setEnabled(False)
            self.worker.quit()

    @staticmethod
    def _guarded(fn: Callable[..., None], *args: Any) -> None:
        # turning results into layers must not kill the viewer either
        try:
            fn(*args)
        except Exception as err:  # noqa: BLE001 - shown as a notification
            notify_error(err)
