"""The channel picker the docks share: for every multichannel input (a layer, or
layers combined as channels), which axis holds channels and which channels feed
the model, in order.  One choice per input, so several ticked layers of different
shapes each get their own; "auto" reads the layer's metadata (channel names, axes)
before guessing from the shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

_BOX_COLUMNS = 3  # channel boxes wrap: named channels in one row made the dock wider than a 1366 px screen allows

from ..app.channels import channel_names_of, metadata_channel_axis

if TYPE_CHECKING:
    from ..core.io.images import ChannelAxis


@dataclass(frozen=True)
class ChannelInput:
    """What the picker needs to know about one input."""

    key: str  # the layer's base name: choices survive the predicted class shown in its name
    name: str
    shape: tuple[int, ...]
    names: tuple[str, ...] | None = None  # channel names (metadata, or the combined layers' names)
    hint: int | None = None  # the channel axis the metadata settles


def channel_input(layer: Any) -> ChannelInput | None:
    """A layer (or anything with ``data``, ``name``, ``metadata``) as a picker input;
    None for RGB and 2-D layers, which have nothing to choose."""
    from ..app.layer_data import base_name

    if isinstance(layer, ChannelInput):
        return layer
    if layer is None or getattr(layer, "rgb", False) or layer.data.ndim < 3:
        return None
    shape = tuple(int(s) for s in layer.data.shape)
    meta = dict(getattr(layer, "metadata", {}) or {})
    names = channel_names_of(meta)
    return ChannelInput(base_name(layer.name, meta), layer.name, shape, tuple(names) if names else None,
                        metadata_channel_axis(shape, False, meta))


class ChannelPicker(QWidget):
    """Channel axis and channels for each multichannel input; hidden when there is none."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.info = QLabel("")
        self.info.setWordWrap(True)
        self.which = QComboBox()
        self.which.setToolTip("each multichannel layer keeps its own channel choice")
        self.axis = QComboBox()
        self.boxes_row = QGridLayout()
        self.boxes_row.setContentsMargins(0, 0, 0, 0)
        self._which_row = QWidget()
        which = QHBoxLayout(self._which_row)
        which.setContentsMargins(0, 0, 0, 0)
        which.addWidget(QLabel("channels of"))
        which.addWidget(self.which, 1)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("channel axis"))
        row.addWidget(self.axis, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._which_row)
        layout.addWidget(self.info)
        layout.addLayout(row)
        layout.addLayout(self.boxes_row)
        self.boxes: list[QCheckBox] = []
        self._inputs: list[ChannelInput] = []
        self._choices: dict[str, dict[str, Any]] = {}  # key -> {"axis": ..., "ticks": [...] or None}
        self._in_chans: int | None = None
        self._shown: ChannelInput | None = None
        self.axis.currentIndexChanged.connect(self._axis_changed)
        self.which.currentIndexChanged.connect(lambda *_: self._show())
        self.setVisible(False)

    # ------------------------------------------------------------------ inputs
    def update_for(self, layer: Any, in_chans: int | None = None) -> None:
        """Offer the choice for one layer (or ChannelInput)."""
        self.update_for_layers([layer], in_chans)

    def update_for_layers(self, layers: list[Any], in_chans: int | None = None) -> None:
        """Offer a choice for each multichannel one of ``layers``."""
        inputs = [i for i in (channel_input(layer) for layer in layers) if i is not None]
        current = self._shown.key if self._shown is not None else None
        self._inputs, self._in_chans = inputs, in_chans
        if not inputs:
            self._shown = None
            self.setVisible(False)
            return
        self.which.blockSignals(True)
        self.which.clear()
        self.which.addItems([f"{i.name} {i.shape}" for i in inputs])
        keys = [i.key for i in inputs]
        self.which.setCurrentIndex(keys.index(current) if current in keys else 0)
        self.which.blockSignals(False)
        self._which_row.setVisible(len(inputs) > 1)
        self._show()
        self.setVisible(True)

    def _current(self) -> ChannelInput | None:
        i = self.which.currentIndex()
        return self._inputs[i] if 0 <= i < len(self._inputs) else None

    def _show(self) -> None:
        inp = self._current()
        if inp is None:
            return
        rebuild = self._shown is None or self._shown.shape != inp.shape or self._shown.key != inp.key
        self._shown = inp
        if rebuild:
            self.axis.blockSignals(True)
            self.axis.clear()
            auto = "auto" if inp.hint is None else f"auto: axis {inp.hint}, from the layer's metadata"
            self.axis.addItem(auto, "auto")
            self.axis.addItem("none: a stack of greyscale planes", "none")
            for i in range(len(inp.shape) - 2):
                self.axis.addItem(f"axis {i} ({inp.shape[i]} entries)", i)
            choice = self._choices.get(inp.key, {})
            self.axis.setCurrentIndex(max(0, self.axis.findData(choice.get("axis", "auto"))))
            self.axis.blockSignals(False)
        self._fill_boxes()
        self._describe()

    @staticmethod
    def _resolved(inp: ChannelInput, axis: Any) -> int | None:
        if axis == "auto":
            return inp.hint
        return axis if isinstance(axis, int) else None

    def _default_ticks(self, n: int) -> list[int]:
        # a model that reads fewer channels than the image has: the first ones, said in the info line
        return list(range(min(n, self._in_chans))) if self._in_chans and self._in_chans < n else list(range(n))

    def _fill_boxes(self) -> None:
        for box in self.boxes:
            self.boxes_row.removeWidget(box)
            box.deleteLater()
        self.boxes = []
        inp = self._shown
        axis = self._resolved(inp, self.axis.currentData()) if inp is not None else None
        if axis is None:
            return
        n = inp.shape[axis]
        names = inp.names if inp.names is not None and len(inp.names) == n else None
        ticks = self._choices.get(inp.key, {}).get("ticks") or self._default_ticks(n)
        for i in range(n):
            box = QCheckBox(names[i] if names else str(i))
            box.setChecked(i in ticks)
            box.toggled.connect(self._ticked)
            self.boxes_row.addWidget(box, i // _BOX_COLUMNS, i % _BOX_COLUMNS)
            self.boxes.append(box)

    def _describe(self) -> None:
        from ..core.errors import CellclassError
        from ..core.io.images import guess_layout

        inp = self._shown
        axis = self.axis.currentData()
        resolved = self._resolved(inp, axis)
        try:
            read = guess_layout(inp.shape, resolved if resolved is not None else axis, self._in_chans, False,
                                inp.name).describe()
        except CellclassError:
            read = "ambiguous — choose the channel axis below"
        text = f"'{inp.name}' {inp.shape}: read as {read}"
        if axis == "auto" and inp.hint is not None:
            text += " (channels named in the layer's metadata)"
        ticked = [b.text() for b in self.boxes if b.isChecked()]
        if self._in_chans:
            text += f"; the model expects {self._in_chans} channel(s)"
            if self.boxes:
                text += f", using {', '.join(ticked)}" if len(ticked) == self._in_chans else f": tick {self._in_chans}"
        self.info.setText(text)

    # ------------------------------------------------------------------ choices
    def _store(self) -> None:
        if self._shown is not None:
            ticks = [i for i, b in enumerate(self.boxes) if b.isChecked()] if self.boxes else None
            self._choices[self._shown.key] = {"axis": self.axis.currentData(), "ticks": ticks}

    def _axis_changed(self, *_: Any) -> None:
        if self._shown is not None:
            self._choices[self._shown.key] = {"axis": self.axis.currentData(), "ticks": None}  # default ticks
        self._fill_boxes()
        self._describe()
        self.changed.emit()

    def _ticked(self, *_: Any) -> None:
        self._store()
        self._describe()
        self.changed.emit()

    def set_axis(self, axis: ChannelAxis | str, channels: list[int] | None = None, layer: Any = None) -> None:
        """Choose ``axis`` ("auto", "none" or an int) and, for an int, the channels,
        for ``layer`` (by default the input shown)."""
        if layer is not None:
            inp = channel_input(layer)
            key = inp.key if inp is not None else None
            keys = [i.key for i in self._inputs]
            if key not in keys:
                raise ValueError(f"{layer!r} is not offered here")
            self.which.setCurrentIndex(keys.index(key))
        index = self.axis.findData(axis)
        if index < 0:
            raise ValueError(f"axis {axis!r} is not offered for this layer")
        self.axis.setCurrentIndex(index)
        if channels is not None:
            for i, box in enumerate(self.boxes):
                box.blockSignals(True)
                box.setChecked(i in channels)
                box.blockSignals(False)
            self._ticked()

    def options_for(self, layer: Any) -> Any:
        """The read options for ``layer`` (or ChannelInput): its own choice, "auto"
        resolved through its metadata; plain "auto" where nothing is known."""
        from ..app.jobs import InputOptions

        inp = channel_input(layer)
        if inp is None or not any(i.key == inp.key for i in self._inputs):
            return InputOptions()
        choice = self._choices.get(inp.key, {})
        axis = choice.get("axis", "auto")
        resolved = self._resolved(inp, axis)
        if resolved is None:
            return InputOptions(channel_axis="none") if axis == "none" else InputOptions()
        if choice.get("ticks") is None:  # not ticked by hand: the model, once loaded, takes its first channels
            return InputOptions(channel_axis=resolved, first_channels=True)
        return InputOptions(channel_axis=resolved, channels=list(choice["ticks"]))

    def options(self) -> Any:
        """The read options for the input shown (a dock with one input)."""
        from ..app.jobs import InputOptions

        return self.options_for(self._shown) if self._shown is not None else InputOptions()


def combined_input(layers: list[Any]) -> ChannelInput | None:
    """Layers to be combined as channels, as one picker input; None where they cannot
    be combined (the run says why)."""
    from ..app.channels import SAMPLE_KEY, combined_name
    from ..app.layer_data import base_name

    shapes = {tuple(int(s) for s in layer.data.shape) for layer in layers}
    if len(layers) < 2 or len(shapes) != 1 or any(getattr(layer, "rgb", False) for layer in layers):
        return None
    shape = shapes.pop()
    if len(shape) not in (2, 3):
        return None
    names = [base_name(layer.name, layer.metadata) for layer in layers]
    name = combined_name(names, [(layer.metadata.get(SAMPLE_KEY) or {}).get("group") for layer in layers])
    axis = len(shape) - 2
    return ChannelInput(f"combined: {name}", name, shape[:axis] + (len(layers),) + shape[axis:], tuple(names), axis)


def combined_requests(viewer: Any, layers: list[Any], picker: ChannelPicker) -> list[Any]:
    """``layers`` as one multichannel request with the picker's channel choice for it;
    [] with a notification where they cannot be combined."""
    from ..app.jobs import make_combined_request
    from ..core.errors import CellclassError
    from ..viewer.notify import notify_error

    try:
        req = make_combined_request(viewer, layers)
    except CellclassError as err:
        notify_error(err)
        return []
    inp = combined_input(layers)
    req.options = picker.options_for(inp) if inp is not None else None
    return [req]
