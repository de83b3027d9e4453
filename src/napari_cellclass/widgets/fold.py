"""Dock furniture that keeps three docks usable on a 1366x768 screen.

``scroll_body`` puts a dock's contents in a scroll area, so the dock's minimum
height is a few rows, not the sum of its widgets (napari otherwise grows the main
window past the screen).  ``Fold`` is a titled section folded by default, for the
options a first run does not need.
"""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QFormLayout,
    QFrame,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

#: the least height a scrolled dock asks for: the first rows stay visible
MIN_BODY_HEIGHT = 120


def scroll_body(dock: QWidget) -> QWidget:
    """Give ``dock`` a scroll area filling it; returns the widget to lay contents on."""
    outer = QVBoxLayout(dock)
    outer.setContentsMargins(0, 0, 0, 0)
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
    area.setMinimumHeight(MIN_BODY_HEIGHT)
    body = QWidget()
    area.setWidget(body)
    outer.addWidget(area)
    dock.scroll_area = area  # type: ignore[attr-defined]  # tests and callers scroll it
    return body


class Fold(QWidget):
    """A section with a ▸/▾ title button; ``form`` holds its rows; folded by default."""

    def __init__(self, title: str, folded: bool = True) -> None:
        super().__init__()
        self.button = QToolButton()
        self.button.setText(title)
        self.button.setCheckable(True)
        self.button.setChecked(not folded)
        self.button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.button.setStyleSheet("QToolButton { border: none; }")
        self.body = QWidget()
        self.form = QFormLayout(self.body)
        self.form.setContentsMargins(12, 0, 0, 0)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.button)
        layout.addWidget(self.body)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self.button.toggled.connect(self.set_open)
        self.set_open(not folded)

    def set_open(self, open_: bool) -> None:
        """Unfold (True) or fold (False); a folded body takes no height."""
        self.button.blockSignals(True)
        self.button.setChecked(open_)
        self.button.blockSignals(False)
        self.button.setArrowType(Qt.ArrowType.DownArrow if open_ else Qt.ArrowType.RightArrow)
        self.body.setVisible(open_)

    def is_open(self) -> bool:
        return self.button.isChecked()
