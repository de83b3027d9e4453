"""*Export for bioimage.io…*: next to *Save…* in the Fine-tune dock, and under the model card
of the Classify dock (the session's current model).

The export (TorchScript trace, validation by bioimageio.spec, Grad-CAM cover) takes
seconds, so it runs in a napari worker thread; the outcome is a notification.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari.qt.threading import create_worker
from napari.utils.notifications import show_info, show_warning
from qtpy.QtWidgets import QFileDialog, QPushButton

from ..viewer.notify import notify_error


class BioimageioExportButton(QPushButton):
    """Writes a model as a bioimage.io package: by default the Fine-tune dock's new (or kept) model.

    ``bundle`` gives the model to export instead (None: nothing to export yet);
    ``default_name`` is the file name the dialog proposes.
    """

    def __init__(self, dock: Any, bundle: Callable[[], Any] | None = None, default_name: str = "fine-tuned.zip",
                 what: str = "the fine-tuned model") -> None:
        super().__init__("Export for bioimage.io…")
        self.setToolTip(f"write {what} as a BioImage Model Zoo package (spec 0.5 zip) "
                        "for ilastik, deepImageJ, QuPath or another napari")
        self.dock = dock
        self.worker: Any = None
        self._get = bundle or self._fine_tuned
        self.default_name = default_name
        self.clicked.connect(self._clicked)

    def _fine_tuned(self) -> Any:
        outcome = self.dock.outcome
        return outcome.bundle if outcome is not None else self.dock.session.fine_tuned

    def _bundle(self) -> Any:
        return self._get()

    def refresh(self) -> None:
        """Enabled while there is a model to export (not during an export)."""
        if self.worker is None or not self.worker.is_running:
            self.setEnabled(self._bundle() is not None)

    def _clicked(self) -> None:
        start = self.dock.session.settings.get("last_model_dir", str(Path.home()))
        path, _ = QFileDialog.getSaveFileName(self, "Export for bioimage.io", str(Path(start) / self.default_name),
                                              "bioimage.io model packages (*.zip)")
        if path:
            self.export(path)

    def export(self, path: str | Path) -> Any:
        """Start the export to ``path``; returns the worker (None when there is no model)."""
        bundle = self._bundle()
        if bundle is None:
            show_warning("Export for bioimage.io: no model to export yet — load or fine-tune one first")
            return None

        def job() -> Path:
            from ..core.explain.cover import gradcam_map
            from ..core.models.bioimageio_export import export_bioimageio

            return export_bioimageio(bundle, path, explainer=gradcam_map)

        self.setEnabled(False)
        worker = create_worker(job, _ignore_errors=True)  # errors become a notification, not a traceback as well
        worker.returned.connect(lambda written: show_info(f"bioimage.io package written to {written}"))
        worker.errored.connect(notify_error)
        worker.finished.connect(lambda: self.setEnabled(self._bundle() is not None))
        self.worker = worker
        worker.start()
        return worker
