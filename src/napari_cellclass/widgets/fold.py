"""Dock furniture that keeps three docks usable on a 1366x768 screen.

``scroll_body`` puts a dock's contents in a scroll area, so the dock's minimum
height is a few rows, not the sum of its widgets (napari otherwise grows the main
window past the screen).  ``Fold`` is a titled section folded by default, for the
options a first run does not need.
"""

from __future__ import annotations

from qtpy.QtCore import QEvent, QSize, Qt, QTimer
from qtpy.QtWidgets import (
    QApplication,
    QComboBox,
    QDockWidget,
    QFormLayout,
    QFrame,
    QMainWindow,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

#: the least height a scrolled dock asks for: the first rows stay visible
MIN_BODY_HEIGHT = 120

#: characters a dock's combo box shows at least.  A combo box otherwise asks for the
#: width of its longest entry (a model path, a long layer name), which pushed the docks
#: past napari's default dock width on a 1366x768 screen; the list still shows it all.
COMBO_CHARS = 10


def narrow_combos(root: QWidget) -> None:
    """Let every combo box under ``root`` shrink to ``COMBO_CHARS``; the full entry is its tooltip."""
    short = QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
    for combo in root.findChildren(QComboBox):
        if combo.sizeAdjustPolicy() == short:
            continue
        before = (combo.sizeAdjustPolicy(), combo.minimumContentsLength(), combo.minimumSizeHint().width())
        _set_width_policy(combo, short, COMBO_CHARS)
        if combo.minimumSizeHint().width() >= before[2]:  # already narrow ("auto", "cpu"): as it was
            _set_width_policy(combo, before[0], before[1])
            continue
        if not combo.toolTip():  # a cut entry can still be read
            combo.setToolTip(combo.currentText())
            combo.currentTextChanged.connect(combo.setToolTip)


def _set_width_policy(combo: QComboBox, policy: QComboBox.SizeAdjustPolicy, chars: int) -> None:
    combo.setSizeAdjustPolicy(policy)
    combo.setMinimumContentsLength(chars)
    # Qt caches the minimum size hint and drops it only on a style or font change
    QApplication.sendEvent(combo, QEvent(QEvent.Type.StyleChange))


class _DockScroll(QScrollArea):
    """The docks' scroll area; narrows combo boxes added by the time it is shown."""

    _fitted = False

    def showEvent(self, event) -> None:  # noqa: ANN001 - Qt event
        if self.widget() is not None:
            narrow_combos(self.widget())
            if not self._fitted:
                self._fitted = True
                QTimer.singleShot(0, self._fit_dock)
        super().showEvent(event)

    def _fit_dock(self) -> None:
        """Once, when first shown: widen the dock to its body, if the window gave it less.

        The main window sizes a dock when it is added, before the combo boxes are
        narrowed; a dock added after the window was sized (the demo) started ~60 px
        short and scrolled sideways.  Later the user's own dock width is kept."""
        dock = self.parentWidget()
        while dock is not None and not isinstance(dock, QDockWidget):
            dock = dock.parentWidget()
        window = dock.parentWidget() if dock is not None else None
        if not isinstance(window, QMainWindow) or dock.isFloating():
            return
        need = self.sizeHint().width() + dock.width() - self.width()
        if dock.width() < need:
            window.resizeDocks([dock], [need], Qt.Orientation.Horizontal)

    def sizeHint(self) -> QSize:
        """Wide enough for the body: a dock added after the window was sized starts at its
        hint, and QScrollArea's own hint left the Classify dock ~80 px short (sideways scrolling)."""
        hint = super().sizeHint()
        body = self.widget()
        if body is not None:
            need = body.minimumSizeHint().width() + self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth()
            hint.setWidth(max(hint.width(), need))
        return hint


def scroll_body(dock: QWidget) -> QWidget:
    """Give ``dock`` a scroll area filling it; returns the widget to lay contents on."""
    outer = QVBoxLayout(dock)
    outer.setContentsMargins(0, 0, 0, 0)
    area = _DockScroll()
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
