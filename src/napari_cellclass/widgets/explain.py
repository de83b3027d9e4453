"""The Explain dock: Grad-CAM-family and FCN maps of one image layer, as layers.

Thin shell over :func:`~.jobs.explain_job`: maps come back aligned to the image
grid and are placed on the source by :func:`napari_cellclass.app.layer_data.explanation_layers`
(one layer per map, translucent, the top class shown; replaced on re-run; added one
per event-loop turn so many maps never freeze the viewer).
"""

from __future__ import annotations

from typing import Any, TYPE_CHECKING

from napari.utils.notifications import show_warning
from qtpy.QtWidgets import QCheckBox, QComboBox, QFormLayout, QHBoxLayout, QSpinBox, QVBoxLayout, QWidget

from ..app import layer_data as L
from ..app.jobs import Explanation, explain_job, make_request
from .level_picker import LevelPicker
from .pickers import ChannelPicker, LayerCombo, ModelPicker
from .channel_picker import combined_input, combined_requests
from ..viewer.class_axis import follow_class_axis
from ..viewer.layers import channel_layers_of
from .feeder import LayerFeeder
from .fold import Fold, scroll_body
from .runner import JobControls
from ..app.session import Session, session_for
from ..viewer.layers import show_in_grid

if TYPE_CHECKING:
    from ..core.models.bundle import ModelBundle
    from napari import Viewer

METHODS = ("gradcam", "gradcam++", "layercam", "hirescam", "cam", "fcn")
PREDICTED, ALL = "predicted class", "all classes"


class ExplainDock(QWidget):
    """Where the evidence is: explanation maps of the current frame of one layer."""

    def __init__(self, napari_viewer: Viewer, session: Session | None = None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.session = session if session is not None else session_for(napari_viewer)
        settings = self.session.settings
        self.image = LayerCombo(napari_viewer)
        self.model = ModelPicker(self.session)
        self.channels = ChannelPicker()
        self.level = LevelPicker()  # multiscale layers only
        self.combine = QCheckBox("combine selected layers as channels")
        self.combine.setToolTip("the image layers selected in napari's layer list (or a sample's channel layers) "
                                "as the channels of one input, in layer order")
        self.method = QComboBox()
        for m in METHODS:
            self.method.addItem(L.METHOD_TITLES[m], m)
        self.method.setCurrentIndex(max(0, self.method.findData(settings.get("explain.method", "gradcam"))))
        self.target = QComboBox()
        self.target.setEditable(True)  # a class name can be typed before the model is loaded
        self.cam_layer = QComboBox()
        self.cam_layer.setEditable(True)
        self.cam_layer.addItem("auto")
        self.tiled = QCheckBox("tiled, high resolution")
        self.tiled.setChecked(bool(settings.get("explain.tiled", False)))
        self.tile = QSpinBox()
        self.tile.setRange(0, 8192)
        self.tile.setSpecialValueText("model input size")
        self.tile.setValue(int(settings.get("explain.tile", 0)))
        self.grid = QCheckBox("beside each channel (grid view)")
        self.grid.setChecked(bool(settings.get("explain.grid", False)))
        self.controls = JobControls("Explain")
        self._seen_bundle: int | None = None
        self._method_chosen = False  # by the user, for the current model choice
        self.feeder: LayerFeeder | None = None  # maps being added, one per event-loop turn
        self._fill_targets()
        self._build()

        self.controls.run_requested.connect(self.run)
        self.image.currentIndexChanged.connect(self._image_changed)
        self.combine.toggled.connect(self._image_changed)
        napari_viewer.layers.selection.events.changed.connect(self._selection_changed)
        self.method.currentIndexChanged.connect(lambda *_: settings.set("explain.method", self.method.currentData()))
        self.method.activated.connect(lambda *_: setattr(self, "_method_chosen", True))  # the user's hand only
        self.tiled.toggled.connect(lambda v: (settings.set("explain.tiled", bool(v)), self.tile.setEnabled(v),
                                              self._image_changed()))
        self.tile.valueChanged.connect(lambda v: settings.set("explain.tile", int(v)))
        self.grid.toggled.connect(lambda v: settings.set("explain.grid", bool(v)))
        self.session.choice_changed.connect(self._model_changed)
        self.session.model_loaded.connect(self._model_changed)
        self.destroyed.connect(lambda *_: self._disconnect(self.session))
        self.tile.setEnabled(self.tiled.isChecked())
        self._image_changed()

    def _build(self) -> None:
        form = QFormLayout()
        form.addRow("image", self.image)
        form.addRow("model", self.model)
        form.addRow("", self.combine)
        form.addRow("", self.channels)
        form.addRow("", self.level)
        form.addRow("method", self.method)
        form.addRow("target", self.target)
        self.advanced = Fold("advanced: layer, tiles, grid")
        self.advanced.form.addRow("CAM layer", self.cam_layer)
        tiles = QHBoxLayout()
        tiles.addWidget(self.tiled)
        tiles.addWidget(self.tile)
        self.advanced.form.addRow("", tiles)
        self.advanced.form.addRow("", self.grid)
        layout = QVBoxLayout(scroll_body(self))
        layout.addLayout(form)
        layout.addWidget(self.advanced)
        layout.addWidget(self.controls)
        layout.addStretch(1)

    def _disconnect(self, session: Session) -> None:
        session.choice_changed.disconnect(self._model_changed)
        session.model_loaded.disconnect(self._model_changed)
        self.viewer.layers.selection.events.changed.disconnect(self._selection_changed)
        self.image.unwatch()

    # ------------------------------------------------------------------ inputs
    def _fill_targets(self) -> None:
        bundle = self.session.cached()
        current = self.target.currentText() or self.session.settings.get("explain.target", PREDICTED)
        self.target.blockSignals(True)
        self.target.clear()
        self.target.addItems([PREDICTED, ALL, *(bundle.classes if bundle is not None else [])])
        self.target.setCurrentText(current)
        self.target.blockSignals(False)
        if bundle is not None:
            self.cam_layer.setToolTip(f"auto: {getattr(bundle.network, 'cam_layer', 'the last spatial feature map')}")
            self._fill_cam_layers(bundle)
            if id(bundle) != self._seen_bundle:  # a model new to this dock: FCN models default to their maps
                self._seen_bundle = id(bundle)
                if bundle.is_fcn and self.method.currentData() != "fcn":
                    self.method.setCurrentIndex(self.method.findData("fcn"))

    def _fill_cam_layers(self, bundle: ModelBundle) -> None:
        """Offer the network's module names (the model is loaded, so torch already is)."""
        try:
            from ..core.explain.target_layers import layer_names

            names = layer_names(bundle.network)
        except Exception:  # noqa: BLE001 - the list is a convenience; typing a name still works
            return
        current = self.cam_layer.currentText()
        self.cam_layer.blockSignals(True)
        self.cam_layer.clear()
        self.cam_layer.addItems(["auto", *names])
        self.cam_layer.setCurrentText(current or "auto")
        self.cam_layer.blockSignals(False)

    def _model_changed(self, *_: Any) -> None:
        if self.session.cached() is None:  # a new choice, not yet loaded: its kind is unknown
            self._method_chosen = False
        self._fill_targets()
        self._image_changed()

    def _image_changed(self, *_: Any) -> None:
        layer = self.image.layer()
        bundle = self.session.cached()
        combined = combined_input(channel_layers_of(self.viewer, layer)) if self.combine.isChecked() else None
        self.channels.update_for(combined or layer, bundle.in_chans if bundle is not None else None)
        self.level.update_for(layer, bundle, "map" if self.tiled.isChecked() else "classify")
        multi = layer is not None and not getattr(layer, "rgb", False) and layer.data.ndim >= 3
        self.grid.setEnabled(multi or combined is not None)

    def _selection_changed(self, *_: Any) -> None:
        if self.combine.isChecked():  # the selection is what gets combined
            self._image_changed()

    def target_value(self) -> str | None:
        text = self.target.currentText().strip()
        self.session.settings.set("explain.target", text)
        if text in ("", PREDICTED):
            return None
        return "all" if text == ALL else text

    # ------------------------------------------------------------------ running
    def run(self) -> Any:
        layer = self.image.layer()
        if layer is None:
            show_warning("Explain: there is no image layer — open an image first")
            return None
        layer_name = self.cam_layer.currentText().strip()
        if self.combine.isChecked():
            requests = combined_requests(self.viewer, channel_layers_of(self.viewer, layer), self.channels)
            if not requests:
                return None
            request = requests[0]
        else:
            request = make_request(self.viewer, layer)
            request.options = self.channels.options_for(layer)
        self.level.apply([request])  # a multiscale layer's level, where chosen
        return self.controls.start(
            explain_job, self.session, request, self.method.currentData(),
            self.target_value(), None if layer_name in ("", "auto") else layer_name,
            self.tile.value() if self.tiled.isChecked() else None, None,
            fcn_models_use_fcn=not self._method_chosen, grid=self.grid.isChecked(),
            desc=f"explain ({L.METHOD_TITLES[self.method.currentData()]})", on_done=self._show, on_end=self._after_run,
        )

    def _after_run(self) -> None:
        bundle = self.session.cached()
        if bundle is not None:
            self.session.model_loaded.emit(bundle)

    def _show(self, out: Explanation) -> None:
        info, layout = out.request.info, out.layout
        maps, pairs = out.maps, out.pairs  # made in the worker: only adding is left for this thread
        if self.feeder is not None:
            self.feeder.cancel()

        def done(layers: list[Any]) -> None:
            self.feeder = None
            added = layers[: len(maps)]
            if pairs:
                show_in_grid(self.viewer, layers[len(maps):], stride=2)
            for layer in layers:
                follow_class_axis(self.viewer, layer)
            where = f" (frame {out.frame})" if layout.is_stack else ""
            res = getattr(out.result, "effective_resolution", None)
            detail = f"; one map cell ≈ {res[0]:.1f}×{res[1]:.1f} source px" if res is not None else ""
            classes = [c for a in added for c in (a.metadata.get(L.META_KEY) or {}).get("axis_classes", [])]
            slider = (f" — {len(classes)} classes on the 'class' slider, most probable first: {classes[0]}"
                      if classes else "")
            self.controls.status.setText(f"{len(added)} map layer(s) of '{info.name}'{where}{detail}: "
                                         + ", ".join(a.name for a in added) + slider)

        # one layer per event-loop turn, the user's selection left alone: paint and input run between
        self.feeder = LayerFeeder(self.viewer, [*maps, *pairs], done, parent=self)
