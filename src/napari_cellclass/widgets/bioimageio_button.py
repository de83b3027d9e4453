"""*Export for bioimage.io…* next to *Save…* in the Fine-tune dock.

The export (TorchScript trace, validation by bioimageio.spec, Grad-CAM cover) takes
seconds, so it runs in a napari worker thread; the outcome is a notification.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.qt.threading import create_worker
from napari.utils.notifications import show_info, show_warning
from qtpy.QtWidgets import QFileDialog, QPushButton

from ..viewer.notify import notify_error

if TYPE_CHECKING:
    from .finetune import FineTunePanel


class BioimageioExportButton(QPushButton):
    """Writes the dock's new (or kept) fine-tuned model as a bioimage.io package."""

    def __init__(self, dock: FineTunePanel) -> None:
        super().__init__("Export for bioimage.io…")
        self.setToolTip("write the fine-tuned model as a BioImage Model Zoo package (spec 0.5 zip) "
                        "for ilastik, deepImageJ, QuPath or another napari")
        self.dock = dock
        self.worker: Any = None
        self.clicked.connect(self._clicked)

    def _bundle(self) -> Any:
        outcome = self.dock.outcome
        return outcome.bundle if outcome is not None else self.dock.session.fine_tuned

    def _clicked(self) -> None:
        start = self.dock.session.settings.get("last_model_dir", str(Path.home()))
        path, _ = QFileDialog.getSaveFileName(self, "Export for bioimage.io", str(Path(start) / "fine-tuned.zip"),
                                              "bioimage.io model packages (*.zip)")
        if path:
            self.export(path)

    def export(self, path: str | Path) -> Any:
        """Start the export to ``path``; returns the worker (None when there is no model)."""
        bundle = self._bundle()
        if bundle is None:
            show_warning("Fine-tune: no fine-tuned model to export yet")
            return None

        def job() -> Path:
            from ..core.explain.cover import gradcam_map
            from ..core.models.bioimageio_export import export_bioimageio

            return export_bioimageio(bundle, path, explainer=gradcam_map)

        self.setEnabled(False)
        worker = create_worker(job)
        worker.returned.connect(lambda written: show_info(f"bioimage.io package written to {written}"))
        worker.errored.connect(notify_error)
        worker.finished.connect(lambda: self.setEnabled(self._bundle() is not None))
        self.worker = worker
        worker.start()
        return worker
