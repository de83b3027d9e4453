"""The "level" row of the Classify and Explain docks, for multiscale layers.

"auto (level k, pixel …)" or one level by hand; hidden for single-resolution
layers; disabled (showing the automatic choice) where the engine takes no override
(whole-image classification and explanations).  The choices themselves come from
:func:`napari_cellclass.app.level_choice.level_choices`.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QComboBox, QHBoxLayout, QLabel, QWidget

from ..app.level_choice import LevelChoices, Purpose, level_choices


class LevelPicker(QWidget):
    """Which pyramid level a run reads: ``level()`` is what InputOptions.level takes."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.combo = QComboBox()
        # the automatic choice's text is long: it must not widen the dock
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setMinimumContentsLength(16)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("level"))
        row.addWidget(self.combo, 1)
        self.choices: LevelChoices | None = None
        self._key: tuple = ()
        self.setVisible(False)

    def update_for(self, layer: Any | None, bundle: Any | None, purpose: Purpose) -> None:
        """Offer ``layer``'s levels (hide the row when it is not multiscale)."""
        choices = level_choices(layer, bundle, purpose)
        self.choices = choices
        if choices is None:
            self._key = ()
            self.setVisible(False)
            return
        key = tuple(r.text() for r in choices.rows)
        chosen = self.combo.currentData() if key == self._key else None  # keep a hand choice for the same pyramid
        self._key = key
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItem(choices.auto_text(), None)
        for r in choices.rows:
            self.combo.addItem(r.text(), r.index)
        self.combo.setCurrentIndex(max(0, self.combo.findData(chosen)) if chosen is not None else 0)
        self.combo.blockSignals(False)
        self.setEnabled(choices.override)
        self.setToolTip(choices.auto_text() + ("" if choices.override else
                        "\nwhole-image runs always read the smallest level of at least the model's input size; "
                        "choose a tiled mode to pick the level by hand"))
        self.setVisible(True)

    def level(self) -> int | None:
        """The level the run should read (None: the engine's automatic choice)."""
        if self.choices is None:
            return None
        return self.choices.level_for(self.combo.currentData())

    def apply(self, requests: list[Any]) -> None:
        """Set the chosen level on each request's own options (a single-resolution layer
        ignores it; a level a pyramid lacks is reported for that layer)."""
        from dataclasses import replace

        from ..app.jobs import InputOptions

        level = self.level()
        if level is None:
            return
        for req in requests:
            req.options = replace(req.options or InputOptions(), level=level)
