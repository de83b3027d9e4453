"""The fine-tune tab: train on the annotations, watch the curves, compare, keep.

Thin shell over :func:`~.finetune_jobs.finetune_job`.  Cancel sets a stop event (the
training returns its best model so far instead of being torn down), so a cancelled
run still ends with a valid model to compare, keep or save.  Keeping a model makes
it the session's "fine-tuned in this session" model, which the Classify and Explain
docks offer, and re-classifies the open images with it; Undo returns to the model
used before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TYPE_CHECKING

from napari.utils.notifications import show_info, show_warning
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..app.verdict import accuracy_line
from .fold import Fold, scroll_body
from ..app import layer_data as L
from .curves import TrainingCurves
from .verdict_view import VerdictDetails
from ..app.finetune_jobs import StartChoice, finetune_job
from .runner import JobControls, notify_error
from ..app.session import ModelChoice, Session

if TYPE_CHECKING:
    from ..core.training.finetune import FineTuneOutcome
    from napari.utils.events import Event
    from napari import Viewer

SCRATCH = ("senescence_cnn", "scaffoldnet", "resnet18")


class StopControls(JobControls):
    """Run/Cancel where Cancel asks the job to stop and return what it has."""

    def __init__(self, run_text: str, parent: QWidget | None = None) -> None:
        super().__init__(run_text, parent)
        self.stop = threading.Event()

    def cancel(self) -> None:
        if self.worker is not None and self.cancel_button.isEnabled():
            self.status.setText("stopping after this step; the best model so far is kept…")
            self.cancel_button.setEnabled(False)
            self.stop.set()


class StartCombo(QComboBox):
    """The session's model, architectures from scratch, and presets (listed on first
    opening: reading them imports torch, which napari's start must not wait for)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.addItem("the session's model (the one the Classify dock uses)", StartChoice("model"))
        for name in SCRATCH:
            self.addItem(f"{name}, from scratch", StartChoice("scratch", name))
        self._presets_listed = False

    def showPopup(self) -> None:  # noqa: N802 - Qt's name
        self.list_presets()
        super().showPopup()

    def list_presets(self) -> None:
        if self._presets_listed:
            return
        self._presets_listed = True
        from ..core.presets.studies import PRESETS

        for name in PRESETS:
            self.addItem(f"preset {name} (fresh weights)", StartChoice("preset", name))

    def choice(self) -> StartChoice:
        return self.currentData()

    def set_choice(self, choice: StartChoice) -> None:
        if choice.kind == "preset":
            self.list_presets()
        for i in range(self.count()):
            if self.itemData(i) == choice:
                self.setCurrentIndex(i)
                return
        raise ValueError(f"{choice} is not offered")


class FineTunePanel(QWidget):
    def __init__(self, viewer: Viewer, session: Session, get_store: Callable[[], Any], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer, self.session, self._get_store = viewer, session, get_store
        s = session.settings.get("finetune.options") or {}
        self.start = StartCombo()
        self.epochs = _spin(1, 1000, s.get("epochs", 5))
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(6)
        self.lr.setRange(1e-6, 1.0)
        self.lr.setSingleStep(1e-4)
        self.lr.setValue(float(s.get("lr", 1e-3)))
        self.batch = _spin(1, 1024, s.get("batch_size", 16))
        self.freeze = QDoubleSpinBox()
        self.freeze.setRange(0.0, 1.0)  # 1: the head only, trained on cached backbone features
        self.freeze.setToolTip("1 trains the head only, on backbone features computed once per image")
        self.freeze.setSingleStep(0.1)
        self.freeze.setValue(float(s.get("freeze_fraction", 0.0)))
        self.two_stage = QCheckBox("two stages: head first, then all layers at lr/10")
        self.two_stage.setChecked(bool(s.get("two_stage", False)))
        self.augment = QCheckBox("augment (flips, 90° rotations)")
        self.augment.setChecked(bool(s.get("augment", True)))
        self.val = QDoubleSpinBox()
        self.val.setRange(0.05, 0.9)
        self.val.setSingleStep(0.05)
        self.val.setValue(float(s.get("val_fraction", 0.25)))
        self.folds = _spin(0, 20, s.get("folds", 0))
        self.folds.setSpecialValueText("no (one split)")
        self.size = _spin(0, 1024, s.get("input_size", 0))
        self.size.setSpecialValueText("the model's")
        self.controls = StopControls("Fine-tune")
        self.curves = TrainingCurves()
        self.result = QLabel("Fine-tune compares the model before and after on the same held-out labels.")
        self.result.setWordWrap(True)
        self.details = VerdictDetails()  # per-class table and confusion matrix, before → after
        self.keep_button = QPushButton("Keep")
        self.discard_button = QPushButton("Discard")
        self.save_button = QPushButton("Save…")
        from .bioimageio_button import BioimageioExportButton

        self.export_button = BioimageioExportButton(self)
        self.undo_button = QPushButton("Undo: previous model")
        self.reclassify = QCheckBox("re-classify the open images when keeping")
        self.reclassify.setChecked(bool(session.settings.get("finetune.reclassify", True)))
        self._build()
        self.outcome: Any = None  # the last run's FineTuneOutcome, until kept or discarded
        self._previous: list[tuple[Any, ModelChoice]] = []
        self.controls.run_requested.connect(self.run)
        self.keep_button.clicked.connect(self.keep)
        self.discard_button.clicked.connect(self.discard)
        self.save_button.clicked.connect(self._save_clicked)
        self.undo_button.clicked.connect(self.undo)
        self.reclassify.toggled.connect(lambda v: session.settings.set("finetune.reclassify", bool(v)))
        self._update_buttons()

    def _build(self) -> None:
        form = QFormLayout()
        form.addRow("start from", self.start)
        form.addRow("epochs", self.epochs)
        self.advanced = Fold("advanced: rate, batch, freezing, validation, size")
        more = self.advanced.form
        more.addRow("learning rate", self.lr)
        more.addRow("batch size", self.batch)
        more.addRow("frozen fraction", self.freeze)
        more.addRow("", self.two_stage)
        more.addRow("", self.augment)
        more.addRow("validation fraction", self.val)
        more.addRow("k-fold", self.folds)
        more.addRow("input size (px)", self.size)
        keep = QHBoxLayout()
        for b in (self.keep_button, self.discard_button, self.save_button, self.export_button):
            keep.addWidget(b)
        layout = QVBoxLayout(scroll_body(self))
        layout.addLayout(form)
        layout.addWidget(self.advanced)
        layout.addWidget(self.controls)
        layout.addWidget(self.curves, 1)
        layout.addWidget(self.result)
        layout.addWidget(self.details)
        layout.addLayout(keep)
        layout.addWidget(self.reclassify)
        layout.addWidget(self.undo_button)

    # ------------------------------------------------------------------ running
    def options(self) -> Any:
        from ..core.training.finetune import FineTuneOptions

        size = self.size.value()
        return FineTuneOptions(epochs=self.epochs.value(), lr=self.lr.value(), batch_size=self.batch.value(),
                               freeze_fraction=self.freeze.value(), two_stage=self.two_stage.isChecked(),
                               augment=self.augment.isChecked(), val_fraction=self.val.value(),
                               folds=self.folds.value(), input_size=(size, size) if size else None)

    def run(self) -> Any:
        """Start fine-tuning on the open annotation file; returns the worker (or None)."""
        store = self._get_store()
        if store is None or not store.items:
            show_warning("Fine-tune: label some images or regions first (Annotate tab)")
            return None
        opts = self.options()
        self.session.settings.set("finetune.options", {
            "epochs": opts.epochs, "lr": opts.lr, "batch_size": opts.batch_size, "freeze_fraction": opts.freeze_fraction,
            "two_stage": opts.two_stage, "augment": opts.augment, "val_fraction": opts.val_fraction,
            "folds": opts.folds, "input_size": self.size.value()})
        self.controls.stop.clear()
        self.curves.clear()
        self.details.show_outcome(None, None)
        self.outcome = None
        self._update_buttons()
        self.result.setText("training…")
        return self.controls.start(finetune_job, self.session, store, self.start.choice(), opts, self.controls.stop,
                                   desc="fine-tune", on_item=self._event, on_done=self._done)

    def _event(self, event: Event) -> None:
        if getattr(event, "kind", None) != "epoch":
            return
        self.curves.add(event.epoch, {"loss": event.loss, "val_loss": event.val_loss, **(event.metrics or {})})

    def _done(self, outcome: FineTuneOutcome) -> None:
        self.outcome = outcome
        b, a = outcome.before or {}, outcome.after or {}
        head = "stopped early: the best model so far" if outcome.cancelled else "done"
        judged = (outcome.n_train + outcome.n_val) if outcome.folds else outcome.n_val  # labels the verdict rests on
        split = f"{outcome.folds}-fold, out-of-fold" if outcome.folds else f"{outcome.n_val} held-out label(s)"
        self.result.setText(
            f"<b>{head}</b> — trained on {outcome.n_train}, judged on {split}:<br>"
            f"accuracy <b>{_pct(b.get('accuracy'))} → {_pct(a.get('accuracy'))}</b>, "
            f"macro F1 {_num(b.get('macro_f1'))} → {_num(a.get('macro_f1'))}<br>"
            f"{accuracy_line(b.get('accuracy'), a.get('accuracy'), judged)}<br>"
            "Keep it to classify with it (the Classify and Explain docks offer it too).")
        self.details.show_outcome(outcome.before, outcome.after)
        if outcome.cancelled:
            self.controls.status.setText("fine-tune: stopped; the best model so far is ready to keep or save")
        self._update_buttons()

    # ------------------------------------------------------------------ after a run
    def keep(self) -> bool:
        if self.outcome is None:
            return False
        self._previous.append((self.session.fine_tuned, self.session.choice))
        self.session.set_fine_tuned(self.outcome.bundle, select=True)
        self.outcome = None
        show_info("the fine-tuned model is now the session's model")
        self._update_buttons()
        if self.reclassify.isChecked():
            self.classify_open_layers()
        return True

    def discard(self) -> None:
        self.outcome = None
        self.result.setText("discarded; the session's model is unchanged")
        self._update_buttons()

    def undo(self) -> bool:
        """Go back to the model used before the last Keep."""
        if not self._previous:
            return False
        bundle, choice = self._previous.pop()
        self.session.set_fine_tuned(bundle, select=False)
        if choice.kind != "fine-tuned" or bundle is not None:
            self.session.set_choice(choice)
        show_info(f"back to {self.session.choice.label}")
        self._update_buttons()
        if self.reclassify.isChecked():
            self.classify_open_layers()
        return True

    def _save_clicked(self) -> None:
        start = self.session.settings.get("last_model_dir", str(Path.home()))
        path, _ = QFileDialog.getSaveFileName(self, "Save the fine-tuned model", str(Path(start) / "fine-tuned.safetensors"),
                                              "Model files (*.safetensors)")
        if path:
            self.save(path)

    def save(self, path: str | Path) -> Path | None:
        """Save the new model (or, once kept, the session's fine-tuned one)."""
        from ..core.models.modelfile import save_model

        bundle = self.outcome.bundle if self.outcome is not None else self.session.fine_tuned
        if bundle is None:
            show_warning("Fine-tune: no fine-tuned model to save yet")
            return None
        try:
            written = save_model(bundle, path)
        except Exception as err:  # noqa: BLE001
            notify_error(err)
            return None
        self.session.settings.add_recent_model(written)
        self.session.settings.set("last_model_dir", str(written.parent))
        self.session.models_listed.emit()  # the file is offered in every model list at once
        show_info(f"model saved to {written}")
        return written

    def _update_buttons(self) -> None:
        pending = self.outcome is not None
        self.keep_button.setEnabled(pending)
        self.discard_button.setEnabled(pending)
        self.save_button.setEnabled(pending or self.session.fine_tuned is not None)
        self.export_button.setEnabled(self.save_button.isEnabled())
        self.undo_button.setEnabled(bool(self._previous))

    # ------------------------------------------------------------------ re-classify
    def classify_open_layers(self, session: Session | None = None, on_end: Callable[[], None] | None = None,
                             job: Callable[..., Any] | None = None) -> Any:
        """Classify every open image layer with the session's model (the Classify dock's job),
        or with ``session``'s (live mode previews a model not kept yet; its ``job`` reuses features)."""
        from ..app.jobs import classify_job, make_request
        from ..viewer.layers import image_layers

        layers = image_layers(self.viewer)
        if not layers:
            return None
        self._sources = {}
        requests = []
        for layer in layers:
            req = make_request(self.viewer, layer)
            self._sources[req.info.name] = layer
            requests.append(req)
        return self.controls.start(job or classify_job, session or self.session, requests, 16, desc="re-classify",
                                   on_item=self._predictions, on_end=on_end)

    def _predictions(self, item: Any) -> None:
        from ..app.tables import PredictionTable, layer_predictions
        from ..app.jobs import LayerPredictions

        if not isinstance(item, LayerPredictions) or not item.rows:
            return
        layer = self._sources.get(item.name)
        if layer is None or layer not in self.viewer.layers:
            return
        table = PredictionTable(list(item.classes), item.rows[0].model, list(item.rows))
        first = item.rows[0]
        shown = L.predicted_name(item.name, first.predicted_class, first.confidence)
        layer.metadata = {**layer.metadata, L.META_KEY: L.prediction_metadata(
            item.name, shown, layer_predictions(table, item.name), item.layout)}
        if not item.layout.is_stack:
            layer.name = shown


def _spin(lo: int, hi: int, value: Any) -> QSpinBox:
    s = QSpinBox()
    s.setRange(lo, hi)
    s.setValue(int(value))
    return s


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * float(v):.0f} %"


def _num(v: Any) -> str:
    return "–" if v is None else f"{float(v):.2f}"
