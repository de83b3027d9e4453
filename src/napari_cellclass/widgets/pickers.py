"""Small input widgets the docks share: image layers, the model, channels.

They only read and show state; nothing here touches pixels beyond a layer's shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TYPE_CHECKING

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..app.session import DEVICES, ModelChoice, Session
from ..viewer.layers import image_layers
from .channel_picker import ChannelPicker  # noqa: F401  (the docks import it from here)

if TYPE_CHECKING:
    from napari.utils.events import Event
    from napari.layers import Layer
    from napari import Viewer


class _LayerWatcher:
    """Calls ``refresh`` whenever layers are added, removed, moved or renamed."""

    def _watch(self, viewer: Viewer) -> None:
        self._viewer = viewer
        ev = viewer.layers.events
        for name in ("inserted", "removed", "moved", "reordered"):
            getattr(ev, name).connect(self._layers_changed)
        self._named: list[Any] = []
        self._layers_changed()

    def unwatch(self) -> None:
        ev = self._viewer.layers.events
        for name in ("inserted", "removed", "moved", "reordered"):
            getattr(ev, name).disconnect(self._layers_changed)
        for layer in self._named:
            layer.events.name.disconnect(self._layers_changed)
        self._named = []

    def _layers_changed(self, event: Event | None = None) -> None:
        for layer in self._named:
            layer.events.name.disconnect(self._layers_changed)
        self._named = list(self._viewer.layers)
        for layer in self._named:
            layer.events.name.connect(self._layers_changed)
        try:
            self.refresh()
        except RuntimeError:  # the Qt side of this widget is gone (dock closed): stop listening
            self.unwatch()

    def refresh(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class LayerChecklist(QWidget, _LayerWatcher):
    """Image layers with check boxes: one, several or all of them."""

    changed = Signal()

    def __init__(self, viewer: Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.list = QListWidget()
        self.list.setMaximumHeight(110)
        self.all_box = QCheckBox("all image layers")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.list)
        layout.addWidget(self.all_box)
        self._layers: list[Any] = []
        self._checked: list[Any] = []
        self.all_box.toggled.connect(self._all_toggled)
        self.list.itemChanged.connect(self._item_changed)
        self._watch(viewer)

    def refresh(self) -> None:
        layers = image_layers(self._viewer)
        new = [layer for layer in layers if not any(layer is old for old in self._layers)]
        self._checked = [c for c in self._checked if any(c is l for l in layers)]
        if self.all_box.isChecked() or (not self._layers and not self._checked and new):
            # a fresh dock, or "all": newcomers are selected; the active layer first of all
            self._checked += new if self.all_box.isChecked() else new[-1:]
        self._layers = layers
        self.list.blockSignals(True)
        self.list.clear()
        for layer in layers:
            item = QListWidgetItem(layer.name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            on = any(layer is c for c in self._checked)
            item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
            self.list.addItem(item)
        self.list.blockSignals(False)
        self.changed.emit()

    def _item_changed(self, item: QListWidgetItem) -> None:
        layer = self._layers[self.list.row(item)]
        self._checked = [c for c in self._checked if c is not layer]
        if item.checkState() == Qt.CheckState.Checked:
            self._checked.append(layer)
        elif self.all_box.isChecked():
            self.all_box.blockSignals(True)
            self.all_box.setChecked(False)
            self.all_box.blockSignals(False)
        self.changed.emit()

    def _all_toggled(self, on: bool) -> None:
        self._checked = list(self._layers) if on else []
        self.refresh()

    def set_selected(self, layers: list[Any]) -> None:
        self._checked = list(layers)
        self.refresh()

    def available(self) -> list[Any]:
        """Every layer offered, in layer-list order."""
        return list(self._layers)

    def selected(self) -> list[Any]:
        """Checked layers, in layer-list order."""
        return [layer for layer in self._layers if any(layer is c for c in self._checked)]


class LayerCombo(QComboBox, _LayerWatcher):
    """One image layer (the Explain dock explains one image at a time)."""

    def __init__(self, viewer: Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._layers: list[Any] = []
        self._watch(viewer)

    def refresh(self) -> None:
        current = self.layer()
        layers = image_layers(self._viewer)
        new = [l for l in layers if not any(l is p for p in self._layers)]
        follow = bool(new and self._layers)
        if follow:  # a newly opened image is the one the user looks at now
            previous, current = current, new[-1]
        self.blockSignals(True)
        self.clear()
        for layer in layers:
            self.addItem(layer.name)
        self._layers = layers
        index = next((i for i, l in enumerate(layers) if l is current), len(layers) - 1)
        self.setCurrentIndex(index)
        self.blockSignals(False)
        if not any(l is current for l in layers) or (follow and current is not previous):
            self.currentIndexChanged.emit(self.currentIndex())

    def layer(self) -> Any | None:
        i = self.currentIndex()
        return self._layers[i] if 0 <= i < len(self._layers) else None

    def set_layer(self, layer: Layer) -> None:
        i = next((i for i, l in enumerate(self._layers) if l is layer), -1)
        if i >= 0:
            self.setCurrentIndex(i)


_BROWSE = "Choose a model file…"


class ModelPicker(QWidget):
    """The session's model (built-in, a file, this session's fine-tuned) and device."""

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.combo = QComboBox()
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setMinimumContentsLength(16)
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        self.device.setCurrentText(session.device)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.combo, 1)
        row.addWidget(QLabel("device"))
        row.addWidget(self.device)
        self._choices: list[ModelChoice | None] = []
        self._fill()
        self.combo.activated.connect(self._activated)
        self.device.currentTextChanged.connect(session.set_device)
        session.choice_changed.connect(self._fill)
        session.fine_tuned_changed.connect(self._fill)
        session.models_listed.connect(self._fill)
        session.device_changed.connect(self._device_changed)
        self.destroyed.connect(lambda *_: self._disconnect(session))

    def _disconnect(self, session: Session) -> None:
        session.choice_changed.disconnect(self._fill)
        session.fine_tuned_changed.disconnect(self._fill)
        session.models_listed.disconnect(self._fill)
        session.device_changed.disconnect(self._device_changed)

    def _fill(self, *_: Any) -> None:
        s = self.session
        choices: list[ModelChoice | None] = [ModelChoice("default")]
        if s.fine_tuned is not None:
            choices.append(ModelChoice("fine-tuned"))
        recent = [ModelChoice("file", p) for p in s.settings.recent_models()]
        if s.choice.kind == "file" and s.choice not in recent:
            recent.insert(0, s.choice)
        choices += recent
        choices.append(None)
        self.combo.blockSignals(True)
        self.combo.clear()
        for c in choices:
            self.combo.addItem(_BROWSE if c is None else c.label)
            if c is not None and c.path:
                self.combo.setItemData(self.combo.count() - 1, c.path, Qt.ItemDataRole.ToolTipRole)
        self._choices = choices
        self.combo.setCurrentIndex(choices.index(s.choice) if s.choice in choices else 0)
        self.combo.blockSignals(False)

    def _device_changed(self, device: str) -> None:
        if self.device.currentText() != device:
            self.device.setCurrentText(device)

    def _activated(self, index: int) -> None:
        choice = self._choices[index] if 0 <= index < len(self._choices) else None
        if choice is None:
            path = self.browse()
            if path is None:
                self._fill()
                return
            choice = ModelChoice("file", path)
        self.session.set_choice(choice)

    def browse(self) -> str | None:
        start = self.session.settings.get("last_model_dir", str(Path.home()))
        path, _ = QFileDialog.getOpenFileName(self, "Open a napari-cellclass model or bioimage.io package", start,
                                              "Models (*.safetensors *.zip rdf.yaml *.bioimageio.yaml)")
        if not path:
            return None
        self.session.settings.set("last_model_dir", str(Path(path).parent))
        return path


def results_table() -> Any:
    """The read-only, sortable, row-selecting results table the Classify docks show."""
    from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget

    view = QTableWidget(0, 0)
    view.setSortingEnabled(True)
    view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    view.setMinimumHeight(140)
    return view
