"""Classify objects: one class per segmented cell of a Labels layer.

Pick an image layer and a Labels layer on the same grid; *Classify objects* crops
every object (bounding box + margin, optionally masked), classifies the crops in a
background job (progress bar, Cancel) and shows one row per object: in the Labels
layer's ``features``, in a ``<labels> · classes`` layer coloured by predicted class
(legend below), and in the table here; clicking a row selects and centres the
object.  *Export CSV…* writes the columns of ``cellclass predict --objects``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_info, show_warning
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..app.object_jobs import (
    ObjectMaps,
    ObjectOutcome,
    ObjectRequest,
    explain_objects_job,
    object_job,
    write_object_csv,
)
from ..app.session import Session, session_for
from ..viewer.layers import image_layers
from ..viewer.object_layers import (
    class_colors,
    go_to_object,
    object_labels_layers,
    show_objects,
)
from .pickers import ChannelPicker, ModelPicker, results_table
from .runner import JobControls, notify_error

if TYPE_CHECKING:
    from napari import Viewer

_SHOWN = ("frame", "label", "predicted_class", "confidence", "area", "centroid_y", "centroid_x")


class _Number(QTableWidgetItem):
    def __init__(self, value: float) -> None:
        super().__init__(f"{value:.3f}" if isinstance(value, float) else str(value))
        self.value = value

    def __lt__(self, other: QTableWidgetItem) -> bool:
        return self.value < other.value if isinstance(other, _Number) else super().__lt__(other)


class _Combo(QComboBox):
    """Layers of one kind by name, refreshed when the layer list changes."""

    def __init__(self, viewer: Viewer, candidates: Any) -> None:
        super().__init__()
        self._viewer, self._candidates, self._layers = viewer, candidates, []
        for ev in ("inserted", "removed", "moved"):
            getattr(viewer.layers.events, ev).connect(self.refresh)
        self.refresh()

    def unwatch(self) -> None:
        for ev in ("inserted", "removed", "moved"):
            getattr(self._viewer.layers.events, ev).disconnect(self.refresh)

    def refresh(self, *_: Any) -> None:
        current = self.layer()
        self._layers = list(self._candidates(self._viewer))
        self.blockSignals(True)
        self.clear()
        self.addItems([layer.name for layer in self._layers])
        self.setCurrentIndex(next((i for i, lay in enumerate(self._layers) if lay is current), len(self._layers) - 1))
        self.blockSignals(False)

    def layer(self) -> Any | None:
        i = self.currentIndex()
        return self._layers[i] if 0 <= i < len(self._layers) else None


class ClassifyObjectsDock(QWidget):
    """Object mode of Classify: a class per object of a Labels layer."""

    def __init__(self, napari_viewer: Viewer, session: Session | None = None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.session = session if session is not None else session_for(napari_viewer)
        settings = self.session.settings
        self.outcome: ObjectOutcome | None = None
        self._labels_layer: Any = None
        self._image_layer: Any = None
        self.image = _Combo(napari_viewer, image_layers)
        self.labels = _Combo(napari_viewer, object_labels_layers)
        self.model = ModelPicker(self.session)
        self.channels = ChannelPicker()
        self.margin = QSpinBox()
        self.margin.setRange(0, 512)
        self.margin.setSuffix(" px")
        self.margin.setValue(int(settings.get("objects.margin", 4)))
        self.mask = QCheckBox("mask the background and the other objects")
        self.mask.setChecked(bool(settings.get("objects.mask", False)))
        self.batch = QSpinBox()
        self.batch.setRange(1, 1024)
        self.batch.setValue(int(settings.get("classify.batch_size", 16)))
        self.controls = JobControls("Classify objects")
        self.view = results_table()
        self.legend = QLabel("")
        self.legend.setWordWrap(True)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setEnabled(False)
        self.explain_button = QPushButton("Explain objects (Grad-CAM at each object)")
        self._build()
        self.controls.run_requested.connect(self.run)
        self.export_button.clicked.connect(self._export_clicked)
        self.explain_button.clicked.connect(self.explain)
        self.view.cellClicked.connect(self._row_clicked)
        self.image.currentIndexChanged.connect(self._update_channels)
        self.margin.valueChanged.connect(lambda v: settings.set("objects.margin", int(v)))
        self.mask.toggled.connect(lambda v: settings.set("objects.mask", bool(v)))
        self.destroyed.connect(lambda *_: (self.image.unwatch(), self.labels.unwatch()))
        self._update_channels()

    def _build(self) -> None:
        form = QFormLayout()
        form.addRow("image", self.image)
        form.addRow("objects (Labels)", self.labels)
        form.addRow("model", self.model)
        form.addRow("", self.channels)
        form.addRow("margin", self.margin)
        form.addRow("", self.mask)
        form.addRow("batch size", self.batch)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.controls)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.legend)
        layout.addWidget(self.export_button)
        layout.addWidget(self.explain_button)

    def _update_channels(self, *_: Any) -> None:
        layer = self.image.layer()
        multi = layer if layer is not None and not getattr(layer, "rgb", False) and layer.data.ndim >= 3 else None
        bundle = self.session.cached()
        self.channels.update_for(multi, bundle.in_chans if bundle is not None else None)

    # ------------------------------------------------------------------ running
    def run(self) -> Any:
        """Start classifying the objects; returns the worker (or None)."""
        request = self._request()
        if request is None:
            return None
        return self.controls.start(object_job, self.session, request, self.batch.value(), self.channels.options(),
                                   desc="classify objects", on_done=self._classified)

    def _request(self) -> ObjectRequest | None:
        image, labels = self.image.layer(), self.labels.layer()
        if image is None or labels is None:
            show_warning("Classify objects: pick an image layer and a Labels layer of its objects "
                         "(segment first, e.g. with cellpose, StarDist or a threshold)")
            return None
        self._labels_layer, self._image_layer = labels, image
        return ObjectRequest(image.data, image.name, getattr(image, "rgb", None), labels.data, labels.name,
                             self.margin.value(), self.mask.isChecked())

    def explain(self) -> Any:
        """Grad-CAM of every object of the frame on screen, as one layer on the image grid."""
        request = self._request()
        if request is None:
            return None
        labels = self._labels_layer
        frame = int(round(labels.world_to_data(self.viewer.dims.point)[0])) if labels.ndim == 3 else 0  # noqa: RUF046 - numpy floats
        return self.controls.start(explain_objects_job, self.session, request, "gradcam", frame,
                                   self.channels.options(), desc="explain objects", on_done=self._explained)

    def _explained(self, result: ObjectMaps) -> None:
        from ..viewer.layers import upsert

        image = self._image_layer
        place = {} if image is None else {"scale": tuple(image.scale)[-2:], "translate": tuple(image.translate)[-2:]}
        upsert(self.viewer, (result.maps, {"name": f"{result.request.labels_name} · {result.method} · objects",
                                           "colormap": "inferno", "blending": "additive", "opacity": 0.5,
                                           "contrast_limits": (0.0, 1.0), **place}, "image"))

    def _classified(self, outcome: ObjectOutcome) -> None:
        self.outcome = outcome
        layer = self._labels_layer
        if layer is not None and layer in self.viewer.layers:
            show_objects(self.viewer, layer, outcome)
        self._fill_view()
        counts = {c: 0 for c in outcome.classes}
        for r in outcome.table.rows:
            counts[r.predicted_class] = counts.get(r.predicted_class, 0) + 1
        colors = class_colors(outcome.classes)
        self.legend.setText(" ".join(f"<span style='color:{colors[c]}'>■</span> {c} ({counts.get(c, 0)})"
                                     for c in outcome.classes))
        self.controls.status.setText(f"classified {len(outcome.table)} object(s) of '{outcome.request.labels_name}' "
                                     f"with {outcome.model}")

    def _fill_view(self) -> None:
        cols = self.outcome.columns() if self.outcome is not None else {}
        names = [*_SHOWN, *[f"p_{c}" for c in (self.outcome.classes if self.outcome else [])]]
        self.view.setSortingEnabled(False)
        self.view.clear()
        self.view.setColumnCount(len(names))
        self.view.setHorizontalHeaderLabels(names)
        n = len(cols.get("label", ()))
        self.view.setRowCount(n)
        for c, name in enumerate(names):
            for r, value in enumerate(cols[name]):
                v = value.item() if hasattr(value, "item") else value
                self.view.setItem(r, c, _Number(v) if isinstance(v, (int, float)) else QTableWidgetItem(str(v)))
        self.view.setSortingEnabled(True)
        self.export_button.setEnabled(n > 0)

    def _row_clicked(self, row: int, _column: int = 0) -> None:
        self.go_to_row(row)

    def go_to_row(self, row: int) -> None:
        """Select the object of table row ``row`` on its Labels layer and centre the view on it."""
        layer = self._labels_layer
        if layer is None or layer not in self.viewer.layers:
            return
        get = {self.view.horizontalHeaderItem(c).text(): self.view.item(row, c) for c in range(self.view.columnCount())}
        go_to_object(self.viewer, layer, int(get["frame"].value), int(get["label"].value),
                     (float(get["centroid_y"].value), float(get["centroid_x"].value)))

    # ------------------------------------------------------------------ export
    def _export_clicked(self) -> None:
        start = self.session.settings.get("classify.csv_dir", str(Path.home()))
        path, _ = QFileDialog.getSaveFileName(self, "Export object predictions", str(Path(start) / "objects.csv"),
                                              "CSV (*.csv)")
        if path:
            self.export_csv(path)

    def export_csv(self, path: str | Path) -> Path | None:
        if self.outcome is None or not len(self.outcome.table):
            show_warning("Classify objects: nothing to export yet — classify the objects first")
            return None
        from ..core.errors import CellclassError

        try:
            written = write_object_csv(self.outcome, path)
        except CellclassError as err:
            notify_error(err)
            return None
        self.session.settings.set("classify.csv_dir", str(written.parent))
        show_info(f"object predictions written to {written}")
        return written
