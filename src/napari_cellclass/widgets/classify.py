"""The Classify dock: classify image layers, show probabilities, export them.

Thin shell: it reads its inputs, starts :func:`~.jobs.classify_job` or
:func:`~.jobs.tiled_map_job` through :class:`~.runner.JobControls`, and shows the
results through :mod:`napari_cellclass.app.layer_data` and :mod:`napari_cellclass.app.tables`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TYPE_CHECKING

from napari.utils.notifications import show_info, show_warning
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..app import layer_data as L
from ..app.tables import PredictionTable, layer_predictions
from ..app.jobs import (ClassifyOutcome, LayerFailure, LayerPredictions, TiledMap, classify_job, load_job, make_request, tiled_map_job)
from ..viewer.layers import image_layers
from .level_picker import LevelPicker
from .pickers import ChannelPicker, LayerChecklist, ModelPicker, results_table
from .channel_picker import combined_input, combined_requests
from ..viewer.layers import channel_layers_of
from .classify_objects import ObjectMode
from .fold import Fold, scroll_body
from .model_card import ModelCardView, results_and_card
from .table_headers import decorate, fit_columns, label_columns, show_probabilities
from .runner import JobControls, notify_error
from ..app.session import Session, session_for
from ..viewer.layers import upsert_all

if TYPE_CHECKING:
    from napari.utils.events import Event
    from napari.layers import Layer
    from napari import Viewer

WHOLE, TILED = "whole image (resized to the model input)", "tiled probability map"


#: background of a row whose image the model flags as out of distribution (core.models.ood)
OOD_BRUSH = (255, 200, 120)
OOD_TIP = "out of distribution: this image is unlike the model's training data; do not trust its class"


def _cell(value: Any) -> QTableWidgetItem:
    if isinstance(value, bool) or value is None:  # the ood column: empty when the model has no statistics
        return QTableWidgetItem("" if value is None else ("OOD" if value else "ok"))
    return _NumberItem(value) if isinstance(value, (int, float)) else QTableWidgetItem(str(value))


def _mark_ood(view: QTableWidget, r: int) -> None:
    from qtpy.QtGui import QBrush, QColor

    for c in range(view.columnCount()):
        item = view.item(r, c)
        if item is not None:
            item.setBackground(QBrush(QColor(*OOD_BRUSH)))
            item.setForeground(QBrush(QColor(0, 0, 0)))
            item.setToolTip(OOD_TIP)


class _NumberItem(QTableWidgetItem):
    """A table cell that shows a number with fixed decimals and sorts by its value."""

    def __init__(self, value: float) -> None:
        super().__init__(f"{value:.3f}" if isinstance(value, float) else str(value))
        self.value = value
        self.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        if isinstance(other, _NumberItem):
            return self.value < other.value
        return super().__lt__(other)


class ClassifyDock(QWidget):
    """Classify one, several or all image layers with the session's model."""

    def __init__(self, napari_viewer: Viewer, session: Session | None = None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.session = session if session is not None else session_for(napari_viewer)
        settings = self.session.settings
        self.table = PredictionTable([], "")
        self._sources: dict[str, Any] = {}  # base name -> layer, for the run in progress

        self.layers = LayerChecklist(napari_viewer)
        self.model = ModelPicker(self.session)
        self.card_button = QPushButton("model card")
        self.channels = ChannelPicker()
        self.level = LevelPicker()  # multiscale layers only
        self.combine = QCheckBox("combine ticked layers as channels")
        self.combine.setToolTip("napari's one-layer-per-channel images (e.g. H, E, DAB): one multichannel "
                                "input, channels in layer-list order")
        self.mode = QComboBox()
        self.mode.addItems([WHOLE, TILED])
        self.mode.setCurrentText(WHOLE)  # not persisted: a remembered tiled mode silently gave no table
        self.tile = QSpinBox()
        self.tile.setRange(0, 8192)
        self.tile.setSpecialValueText("model input size")
        self.tile.setValue(int(settings.get("classify.tile", 0)))
        self.overlap = QDoubleSpinBox()
        self.overlap.setRange(0.0, 0.9)
        self.overlap.setSingleStep(0.25)
        self.overlap.setValue(float(settings.get("classify.overlap", 0.5)))
        self.batch = QSpinBox()
        self.batch.setRange(1, 1024)
        self.batch.setValue(int(settings.get("classify.batch_size", 16)))
        self.rename = QCheckBox("show the predicted class in the layer name")
        self.rename.setChecked(bool(settings.get("classify.rename", True)))
        self.controls = JobControls("Classify")
        self.view = results_table()
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setEnabled(False)
        self.all_probs = QCheckBox("every class's probability")  # columns; 'top classes' sums them up
        self.card = ModelCardView()  # formatted sections; resizable in the splitter under the table
        self.card.setPlaceholderText("Classify once, or press 'model card', to see the model's card.")
        self.objects = ObjectMode(self)  # object mode: 'objects: <a Labels layer>' (widgets.classify_objects)
        from .bioimageio_button import BioimageioExportButton

        self.card_export = BioimageioExportButton(self, self.session.cached, "model.zip", "the current model")

        self._build()
        self.controls.run_requested.connect(self.run)
        self.export_button.clicked.connect(self._export_clicked)
        self.all_probs.toggled.connect(lambda on: (show_probabilities(self.view, on), fit_columns(self.view)))
        self.card_button.clicked.connect(self.show_card)
        self.layers.changed.connect(self._update_channels)
        self.combine.toggled.connect(self._update_channels)
        self.mode.currentTextChanged.connect(self._mode_changed)
        self.tile.valueChanged.connect(lambda v: settings.set("classify.tile", int(v)))
        self.overlap.valueChanged.connect(lambda v: settings.set("classify.overlap", float(v)))
        self.batch.valueChanged.connect(lambda v: settings.set("classify.batch_size", int(v)))
        self.rename.toggled.connect(lambda v: settings.set("classify.rename", bool(v)))
        self.session.choice_changed.connect(self._model_changed)
        self.session.fine_tuned_changed.connect(self._tuned_changed)
        napari_viewer.dims.events.point.connect(self._follow_dims)
        self.destroyed.connect(lambda *_: self._disconnect(napari_viewer, self.session))
        self._mode_changed(self.mode.currentText())
        self._update_channels()
        self.card_export.refresh()

    def _build(self) -> None:
        form = QFormLayout()
        form.addRow("images", self.layers)
        form.addRow("objects", self.objects)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model, 1)
        model_row.addWidget(self.card_button)
        form.addRow("model", model_row)
        form.addRow("", self.combine)
        form.addRow("", self.channels)
        form.addRow("mode", self.mode)
        form.addRow("", self.level)
        tiles = QHBoxLayout()
        tiles.addWidget(self.tile)
        tiles.addWidget(self.overlap)
        self._tiles_row = QWidget()
        self._tiles_row.setLayout(tiles)
        self.advanced = Fold("advanced: tiles, batch size, layer names")
        self.advanced.form.addRow("tile, overlap", self._tiles_row)
        self.advanced.form.addRow("batch size", self.batch)
        self.advanced.form.addRow("", self.rename)
        layout = QVBoxLayout(scroll_body(self))
        layout.addLayout(form)
        layout.addWidget(self.advanced)
        layout.addWidget(self.controls)
        self.splitter = results_and_card(self.view, [self.objects.footer], [self.all_probs, self.export_button],
                                         [self.card, self.card_export])
        layout.addWidget(self.splitter, 1)

    def _disconnect(self, viewer: Viewer, session: Session) -> None:
        viewer.dims.events.point.disconnect(self._follow_dims)
        session.choice_changed.disconnect(self._model_changed)
        session.fine_tuned_changed.disconnect(self._tuned_changed)
        self.layers.unwatch()

    # ------------------------------------------------------------------ inputs
    def _mode_changed(self, text: str) -> None:
        self._tiles_row.setEnabled(text == TILED)
        self._update_channels()  # the level row: chosen by hand for tiled maps only
        if text == TILED:
            self.advanced.set_open(True)  # the tile settings now matter

    def _update_channels(self) -> None:
        chosen = self.layers.selected()
        bundle = self.session.cached()
        pyramid = next((layer for layer in chosen if getattr(layer, "multiscale", False)), None)
        self.level.update_for(pyramid, bundle, "map" if self.mode.currentText() == TILED else "classify")
        if self.combine.isChecked():  # one input: the ticked layers (or a sample's channel layers) as its channels
            chosen = [combined_input(self._to_combine(chosen))]
        self.channels.update_for_layers(chosen, bundle.in_chans if bundle is not None else None)

    def _to_combine(self, chosen: list[Any]) -> list[Any]:
        """The ticked layers; one ticked layer of a sample's channel group stands for its group."""
        return channel_layers_of(self.viewer, chosen[0]) if len(chosen) == 1 else chosen

    def _model_changed(self, *_: Any) -> None:
        bundle = self.session.cached()
        self.card.setPlainText(bundle.card() if bundle is not None else "")
        self._update_channels()
        self._clear_stale()
        self.card_export.refresh()

    def _tuned_changed(self, *_: Any) -> None:
        if self.session.choice.kind == "fine-tuned":  # Keep again: same choice, another model
            self._clear_stale()

    def _clear_stale(self) -> None:
        """The table's rows came from a model that is no longer the session's: Export
        CSV would write them under the new model's name, so they go."""
        if self.table.rows:
            self.table = PredictionTable([], "")
            if not self.objects.active():
                self._fill_view()
            self.controls.status.setText("the model changed: classify again for its table")

    # ------------------------------------------------------------------ running
    def run(self) -> Any:
        """Start classifying the checked layers; returns the worker (or None)."""
        chosen = self.layers.selected()
        if not chosen:
            show_warning("Classify: no image layer is selected — open an image, then tick it in the list")
            return None
        if self.objects.active():
            return self.objects.run(chosen)
        self._sources = {}
        requests = []
        if self.combine.isChecked():
            requests = combined_requests(self.viewer, self._to_combine(chosen), self.channels)
            chosen = []
        for layer in chosen:
            req = make_request(self.viewer, layer)
            req.options = self.channels.options_for(layer)  # each layer its own channel choice
            self._sources[req.info.name] = layer
            requests.append(req)
        if not requests:
            return None
        options = None
        self.level.apply(requests)  # a multiscale layer's level, where chosen
        if self.mode.currentText() == TILED:
            return self.controls.start(
                tiled_map_job, self.session, requests, self.tile.value() or None, self.overlap.value(),
                self.batch.value(), options, desc="probability map", on_item=self._show_item, on_end=self._after_run,
            )
        return self.controls.start(
            classify_job, self.session, requests, self.batch.value(), options,
            desc="classify", on_item=self._show_item, on_done=self._classified, on_end=self._after_run,
        )

    def show_card(self) -> Any:
        return self.controls.start(load_job, self.session, desc="load model", on_done=self.card.setPlainText,
                                   on_end=self._after_run)

    def _after_run(self) -> None:
        bundle = self.session.cached()
        if bundle is not None:
            self.session.model_loaded.emit(bundle)
            self._update_channels()
        self.card_export.refresh()

    def _show_item(self, item: Any) -> None:
        if isinstance(item, LayerFailure):
            show_warning(f"Classify skipped '{item.name}': {item.message}")
        elif isinstance(item, LayerPredictions):
            self._show_predictions(item)
        elif isinstance(item, TiledMap):
            tuples = L.probability_map_layers(item.probabilities, item.grid, item.classes, item.request.info,
                                              item.layout, item.frame, item.model)
            upsert_all(self.viewer, tuples)

    def _show_predictions(self, item: LayerPredictions) -> None:
        if not item.rows:
            return
        model = item.rows[0].model
        if self.table.classes != item.classes or self.table.model != model:
            self.table = PredictionTable(list(item.classes), model)
        self.table.replace_layer(item.name, item.rows)
        layer = self._sources.get(item.name)
        if layer is not None and layer in self.viewer.layers:
            meta = L.prediction_metadata(item.name, layer.name, layer_predictions(self.table, item.name), item.layout)
            layer.metadata = {**layer.metadata, L.META_KEY: meta}
            self._show_in_name(layer)
        if not self.objects.active():  # the table shows object rows in object mode
            self._fill_view()

    def _classified(self, outcome: ClassifyOutcome) -> None:
        self.card.setPlainText(outcome.model_card)
        n_layers = len({r.layer for r in outcome.table.rows})
        self.controls.status.setText(
            f"classified {len(outcome.table.rows)} image(s) in {n_layers} layer(s) with {outcome.table.model}"
            + (f"; {len(outcome.failures)} layer(s) skipped" if outcome.failures else "")
            + (f"; {n_ood} flagged out of distribution (marked)" if (n_ood := sum(bool(r.ood) for r in outcome.table.rows)) else "")
        )
        self._follow_dims()

    # ------------------------------------------------------------------ showing
    def _fill_view(self) -> None:
        t = self.table
        self.view.setSortingEnabled(False)
        self.view.clear()
        self.view.setColumnCount(len(t.columns))
        label_columns(self.view, t.columns)  # short probability headers, full names in tooltips
        self.view.setRowCount(len(t.rows))
        for r, row in enumerate(t.rows):
            for c, value in enumerate(row.values()):
                self.view.setItem(r, c, _cell(value))
            if row.ood:  # unlike the training data: the whole row is marked, its class not to be trusted
                _mark_ood(self.view, r)
        decorate(self.view, t.classes, t.rows, self.all_probs.isChecked())  # fits a dock: top classes, short headers
        self.view.setSortingEnabled(True)
        self.export_button.setEnabled(bool(t.rows))

    def _show_in_name(self, layer: Layer, frame: int | None = None) -> None:
        meta = layer.metadata.get(L.META_KEY) or {}
        preds = meta.get("predictions") or {}
        frames = preds.get("frame") or []
        if not frames or not self.rename.isChecked():
            return
        if frame is None:
            frame = L.frame_at(meta.get("frame_axis"), meta.get("n_frames", 1), layer.world_to_data(self.viewer.dims.point))
        if frame in frames:
            i = frames.index(frame)
            name = L.predicted_name(meta["base_name"], preds["predicted_class"][i], preds["confidence"][i])
        else:  # a frame that could not be read has no class to show
            name = meta["base_name"]
        if layer.name != name:
            layer.metadata = {**layer.metadata, L.META_KEY: {**meta, "shown_name": name}}
            layer.name = name
            if layer.name != name:  # napari made it unique (another layer has that name)
                layer.metadata = {**layer.metadata, L.META_KEY: {**meta, "shown_name": layer.name}}

    def _follow_dims(self, event: Event | None = None) -> None:
        """Stacks: show the current frame's class in the name and select its row."""
        active = self.viewer.layers.selection.active
        target_row = None
        for layer in image_layers(self.viewer):
            meta = layer.metadata.get(L.META_KEY)
            if not meta or meta.get("frame_axis") is None or not meta.get("predictions"):
                continue
            frame = L.frame_at(meta["frame_axis"], meta.get("n_frames", 1), layer.world_to_data(self.viewer.dims.point))
            self._show_in_name(layer, frame)
            if target_row is None or layer is active:
                target_row = (meta["base_name"], frame)
        if target_row is not None:
            self.select_row(*target_row)

    def select_row(self, layer_name: str, frame: int) -> int:
        """Select (and scroll to) the table row of ``layer_name`` at ``frame``; -1 if absent."""
        for r in range(self.view.rowCount()):
            name, fr = self.view.item(r, 0), self.view.item(r, 1)
            if name is not None and fr is not None and name.text() == layer_name and int(fr.text()) == frame:
                self.view.selectRow(r)
                self.view.scrollToItem(name)
                return r
        return -1

    # ------------------------------------------------------------------ export
    def _export_clicked(self) -> None:
        start = self.session.settings.get("classify.csv_dir", str(Path.home()))
        path, _ = QFileDialog.getSaveFileName(self, "Export predictions", str(Path(start) / "predictions.csv"), "CSV (*.csv)")
        if path:
            self.export_csv(path)

    def export_csv(self, path: str | Path) -> Path | None:
        if self.objects.active():
            return self.objects.export_csv(path)
        if not self.table.rows:
            show_warning("Classify: nothing to export yet — classify some images first")
            return None
        from ..core.errors import CellclassError

        try:
            written = self.table.write_csv(path)
        except CellclassError as err:
            notify_error(err)
            return None
        self.session.settings.set("classify.csv_dir", str(written.parent))
        show_info(f"predictions written to {written}")
        return written
