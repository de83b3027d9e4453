"""Object mode of the Classify dock: one class per segmented cell of a Labels layer.

Pick *objects: <a Labels layer>* in the Classify dock (the ticked image layer is the
one it segments, on the same grid); *Classify* then crops every object (bounding
box + margin, optionally masked), classifies the crops in a background job
(progress bar, Cancel) and shows one row per object: in the Labels layer's
``features``, in a ``<labels> · classes`` layer coloured by predicted class (the
legend below the table), and in the dock's table; clicking a row selects and
centres the object.  *Export CSV…* writes the columns of ``cellclass predict
--objects``.  With *objects: none* the dock classifies whole images as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_info, show_warning
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..app.object_jobs import ObjectMaps, ObjectOutcome, ObjectRequest, explain_objects_job, object_job, write_object_csv
from ..viewer.object_layers import class_colors, go_to_object, object_labels_layers, show_objects
from .runner import notify_error

if TYPE_CHECKING:
    from napari import Viewer

NONE = "none (classify whole images)"
SHOWN = ("frame", "label", "predicted_class", "confidence", "area", "centroid_y", "centroid_x")
OOD_BRUSH = (255, 200, 120)  # the Classify dock's colour for rows unlike the training data


class _Number(QTableWidgetItem):
    """A cell that shows a number and sorts by its value."""

    def __init__(self, value: float) -> None:
        super().__init__(f"{value:.3f}" if isinstance(value, float) else str(value))
        self.value = value

    def __lt__(self, other: QTableWidgetItem) -> bool:
        return self.value < other.value if isinstance(other, _Number) else super().__lt__(other)


def _cell(value: Any) -> QTableWidgetItem:
    v = value.item() if hasattr(value, "item") else value
    if isinstance(v, bool) or v is None:  # the ood column: empty when the model has no statistics
        return QTableWidgetItem("" if v is None else ("OOD" if v else "ok"))
    return _Number(v) if isinstance(v, (int, float)) else QTableWidgetItem(str(v))


class ObjectsCombo(QComboBox):
    """'none' or one Labels layer of objects, refreshed when the layer list changes."""

    def __init__(self, viewer: Viewer) -> None:
        super().__init__()
        self._viewer, self._layers = viewer, []
        for ev in ("inserted", "removed", "moved"):
            getattr(viewer.layers.events, ev).connect(self.refresh)
        self.refresh()

    def unwatch(self) -> None:
        for ev in ("inserted", "removed", "moved"):
            getattr(self._viewer.layers.events, ev).disconnect(self.refresh)

    def refresh(self, *_: Any) -> None:
        current = self.layer()
        self._layers = object_labels_layers(self._viewer)
        self.blockSignals(True)
        self.clear()
        self.addItems([NONE, *[layer.name for layer in self._layers]])
        # never switches itself on: a Labels layer opened for painting must not change what Classify does
        self.setCurrentIndex(next((i + 1 for i, lay in enumerate(self._layers) if lay is current), 0))
        self.blockSignals(False)
        if current is not None and self.layer() is not current:
            self.currentIndexChanged.emit(self.currentIndex())

    def layer(self) -> Any | None:
        i = self.currentIndex() - 1
        return self._layers[i] if 0 <= i < len(self._layers) else None

    def set_layer(self, layer: Any | None) -> None:
        self.setCurrentIndex(next((i + 1 for i, lay in enumerate(self._layers) if lay is layer), 0))


def image_for(chosen: list[Any], labels: Any) -> Any | None:
    """The ticked image layer the Labels layer segments: the only one, or the only one on its grid."""
    if len(chosen) == 1:
        return chosen[0]
    hw = tuple(labels.data.shape[-2:])
    same = [lay for lay in chosen if tuple(lay.data.shape[-3:-1] if getattr(lay, "rgb", False) else lay.data.shape[-2:]) == hw]
    return same[0] if len(same) == 1 else None


class ObjectMode(QWidget):
    """The 'objects' row of the Classify dock and what it runs and shows.

    It uses the dock's image list, channels, batch size, job controls, table and
    Export button; only the Labels picker, the crop options, the legend and Explain
    are its own."""

    def __init__(self, dock: Any) -> None:
        super().__init__()
        self.dock, self.viewer, self.session = dock, dock.viewer, dock.session
        settings = self.session.settings
        self.outcome: ObjectOutcome | None = None
        self._labels_layer: Any = None
        self._image_layer: Any = None
        self.labels = ObjectsCombo(self.viewer)
        self.margin = QSpinBox()
        self.margin.setRange(0, 512)
        self.margin.setSuffix(" px")
        self.margin.setToolTip("pixels around each object's bounding box in its crop (0: the box exactly)")
        self.margin.setValue(int(settings.get("objects.margin", 4)))
        self.mask = QCheckBox("mask")
        self.mask.setToolTip("set the background and the other objects in each crop to 0")
        self.mask.setChecked(bool(settings.get("objects.mask", False)))
        self.explain_button = QPushButton("Explain objects")
        self.explain_button.setToolTip("Grad-CAM of every object of the frame on screen, pasted at its place")
        self.legend = QLabel("")
        self.legend.setWordWrap(True)
        self._build()
        self.labels.currentIndexChanged.connect(self._picked)
        self.margin.valueChanged.connect(lambda v: settings.set("objects.margin", int(v)))
        self.mask.toggled.connect(lambda v: settings.set("objects.mask", bool(v)))
        self.explain_button.clicked.connect(self.explain)
        dock.view.cellClicked.connect(self._row_clicked)
        self.session.choice_changed.connect(self._model_changed)
        self.destroyed.connect(lambda *_: self._disconnect())
        self._picked()

    def _build(self) -> None:
        self.options = QWidget()
        row = QHBoxLayout(self.options)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("margin"))
        row.addWidget(self.margin)
        row.addWidget(self.mask)
        row.addStretch(1)
        # below the table: the legend, and Explain beside it (the options row is wide enough already)
        self.footer = QWidget()
        foot = QHBoxLayout(self.footer)
        foot.setContentsMargins(0, 0, 0, 0)
        foot.addWidget(self.legend, 1)
        foot.addWidget(self.explain_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.labels)
        layout.addWidget(self.options)

    def _disconnect(self) -> None:
        self.labels.unwatch()
        self.session.choice_changed.disconnect(self._model_changed)

    def active(self) -> bool:
        """Whether Classify runs on objects (a Labels layer is picked)."""
        return self.labels.layer() is not None

    def showing(self) -> bool:
        """Whether the dock's table holds object rows."""
        return self.active() and self.outcome is not None

    def _picked(self, *_: Any) -> None:
        on = self.active()
        self.options.setVisible(on)
        self.footer.setVisible(on)
        self.dock.mode.setEnabled(not on)  # whole image / tiled does not apply to objects
        self.outcome = None
        self.legend.setText("")
        if on:
            self.fill_view()
        else:
            self.dock._fill_view()  # the image rows again

    def _model_changed(self, *_: Any) -> None:
        if self.outcome is not None:  # rows of another model: Export would mislabel them
            self.outcome = None
            self.legend.setText("")
            self.fill_view()

    # ------------------------------------------------------------------ running
    def request(self, chosen: list[Any]) -> ObjectRequest | None:
        labels = self.labels.layer()
        image = image_for(chosen, labels) if labels is not None else None
        if labels is None or image is None:
            show_warning(f"Classify: tick the one image layer that '{labels.name if labels else 'objects'}' segments "
                         "(an image on the same grid as the Labels layer)")
            return None
        self._labels_layer, self._image_layer = labels, image
        return ObjectRequest(image.data, image.name, getattr(image, "rgb", None), labels.data, labels.name,
                             self.margin.value(), self.mask.isChecked())

    def run(self, chosen: list[Any]) -> Any:
        """Classify every object of the picked Labels layer; returns the worker (or None)."""
        request = self.request(chosen)
        if request is None:
            return None
        return self.dock.controls.start(object_job, self.session, request, self.dock.batch.value(),
                                        self.dock.channels.options(), desc="classify objects",
                                        on_done=self._classified, on_end=self.dock._after_run)

    def explain(self) -> Any:
        """Grad-CAM of every object of the frame on screen, as one layer on the image grid."""
        request = self.request(self.dock.layers.selected())
        if request is None:
            return None
        labels = self._labels_layer
        frame = int(round(labels.world_to_data(self.viewer.dims.point)[0])) if labels.ndim == 3 else 0  # noqa: RUF046 - numpy floats
        return self.dock.controls.start(explain_objects_job, self.session, request, "gradcam", frame,
                                        self.dock.channels.options(), desc="explain objects", on_done=self._explained)

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
        self.fill_view()
        counts = {c: 0 for c in outcome.classes}
        for r in outcome.table.rows:
            counts[r.predicted_class] = counts.get(r.predicted_class, 0) + 1
        colors = class_colors(outcome.classes)
        self.legend.setText("classes: " + "&nbsp;&nbsp;".join(
            f"<span style='color:{colors[c]}; font-size:14pt'>■</span> {c} ({counts.get(c, 0)})" for c in outcome.classes))
        bundle = self.session.cached()
        if bundle is not None:
            self.dock.card.setPlainText(bundle.card())
        n_ood = sum(bool(r.ood) for r in outcome.table.rows)
        self.dock.controls.status.setText(
            f"classified {len(outcome.table)} object(s) of '{outcome.request.labels_name}' with {outcome.model}"
            + (f"; {n_ood} flagged out of distribution (marked)" if n_ood else "")
            + ("" if bundle is None or bundle.ood is not None else "; the model has no OOD statistics (ood empty)"))

    # ------------------------------------------------------------------ showing
    def fill_view(self) -> None:
        """One row per object in the dock's table (empty until classified)."""
        view: QTableWidget = self.dock.view
        cols = self.outcome.columns() if self.outcome is not None else {}
        classes = self.outcome.classes if self.outcome is not None else []
        names = [*SHOWN, *[f"p_{c}" for c in classes], "ood_score", "ood"]
        view.setSortingEnabled(False)
        view.clear()
        view.setColumnCount(len(names))
        view.setHorizontalHeaderLabels(names)
        for c in range(len(names)):  # the image rows hide their probability columns (widgets.table_headers)
            view.setColumnHidden(c, False)
        n = len(cols.get("label", ()))
        view.setRowCount(n)
        for c, name in enumerate(names):
            for r, value in enumerate(cols.get(name, ())):
                view.setItem(r, c, _cell(value))
        for r, flag in enumerate(cols.get("ood", ())):
            if flag:  # unlike the training data: its class not to be trusted
                _mark(view, r)
        view.setSortingEnabled(True)
        self.dock.export_button.setEnabled(n > 0)

    def _row_clicked(self, row: int, _column: int = 0) -> None:
        if self.showing():
            self.go_to_row(row)

    def go_to_row(self, row: int) -> None:
        """Select the object of table row ``row`` on its Labels layer and centre the view on it."""
        layer = self._labels_layer
        view = self.dock.view
        if layer is None or layer not in self.viewer.layers:
            return
        get = {view.horizontalHeaderItem(c).text(): view.item(row, c) for c in range(view.columnCount())}
        go_to_object(self.viewer, layer, int(get["frame"].value), int(get["label"].value),
                     (float(get["centroid_y"].value), float(get["centroid_x"].value)))
        view.selectRow(row)

    def export_csv(self, path: str | Path) -> Path | None:
        if self.outcome is None or not len(self.outcome.table):
            show_warning("Classify: no object rows to export yet — classify the objects first")
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


def _mark(view: QTableWidget, r: int) -> None:
    from qtpy.QtGui import QBrush, QColor

    for c in range(view.columnCount()):
        item = view.item(r, c)
        if item is not None:
            item.setBackground(QBrush(QColor(*OOD_BRUSH)))
            item.setForeground(QBrush(QColor(0, 0, 0)))
            item.setToolTip("out of distribution: this object is unlike the model's training data")
