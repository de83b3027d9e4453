"""The fine-tune verdict's details in the dock: a per-class table (precision, recall,
F1 before → after, with support) and the confusion matrix of the held-out labels
before → after — what ``cellclass report`` writes, where the user decides to keep."""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtGui import QBrush, QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
)

from ..app.verdict import confusion, per_class_rows
from .fold import Fold

#: a class name in a header is cut to this many characters (the full name is in its tooltip)
SHORT = 10
_GOOD, _BAD = QColor(0, 158, 115, 90), QColor(213, 94, 0, 90)  # Okabe–Ito green / vermilion, translucent


def _short(name: str) -> str:
    return name if len(name) <= SHORT else name[:SHORT - 1] + "…"


def _pair(b: Any, a: Any) -> str:
    f = lambda v: "–" if v is None else f"{float(v):.2f}"
    return f"{f(b)} → {f(a)}"


def _table(rows: int, cols: int) -> QTableWidget:
    t = QTableWidget(rows, cols)
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    t.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    t.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    return t


def _fit_height(t: QTableWidget) -> None:
    """Show every row: the dock scrolls, the table does not."""
    h = t.horizontalHeader().height() + sum(t.rowHeight(r) for r in range(t.rowCount())) + 2 * t.frameWidth() + 2
    t.setFixedHeight(h)


class VerdictDetails(Fold):
    """Unfolded after a run: per-class table above, confusion matrix below."""

    def __init__(self) -> None:
        super().__init__("per class and confusion matrix (held-out labels, before → after)", folded=True)
        self.per_class = _table(0, 5)
        self.per_class.setHorizontalHeaderLabels(["class", "support", "precision", "recall", "F1"])
        self.per_class.verticalHeader().setVisible(False)
        self.matrix = _table(0, 0)
        self.matrix_note = QLabel("rows: true class; columns: predicted; each cell: count before → after")
        self.matrix_note.setWordWrap(True)
        self.form.addRow(self.per_class)
        self.form.addRow(self.matrix_note)
        self.form.addRow(self.matrix)
        self.setEnabled(False)

    def show_outcome(self, before: dict | None, after: dict | None) -> None:
        """Fill both tables from the run's before/after metrics (cleared when absent)."""
        rows = per_class_rows(before, after)
        self.per_class.setRowCount(len(rows))
        for r, row in enumerate(rows):
            name = QTableWidgetItem(_short(row["class"]))
            name.setToolTip(row["class"])
            self.per_class.setItem(r, 0, name)
            self.per_class.setItem(r, 1, _num(str(row["support"])))
            for c, m in enumerate(("precision", "recall", "f1"), start=2):
                b, a = row[m]
                item = _num(_pair(b, a))
                if b is not None and a is not None and abs(a - b) > 1e-9:
                    item.setBackground(QBrush(_GOOD if a > b else _BAD))
                self.per_class.setItem(r, c, item)
        self._fill_matrix(confusion(before, after))
        _fit_height(self.per_class)
        self.setEnabled(bool(rows))
        if rows:
            self.set_open(True)

    def _fill_matrix(self, cm: Any) -> None:
        if cm is None:
            self.matrix.setRowCount(0)
            self.matrix.setColumnCount(0)
            self.matrix_note.setText("no confusion matrix: nothing was held out")
            return
        true, cols, cells = cm
        self.matrix.setRowCount(len(true))
        self.matrix.setColumnCount(len(cols))
        self.matrix.setHorizontalHeaderLabels([_short(c) for c in cols])
        self.matrix.setVerticalHeaderLabels([_short(c) for c in true])
        for c, name in enumerate(cols):
            self.matrix.horizontalHeaderItem(c).setToolTip(f"predicted {name}")
        for r, name in enumerate(true):
            self.matrix.verticalHeaderItem(r).setToolTip(f"true {name}")
            for c, (b, a) in enumerate(cells[r]):
                item = _num(f"{b} → {a}")
                item.setToolTip(f"true {name}, predicted {cols[c]}: {b} before, {a} after")
                if a != b:  # more on the diagonal, or fewer off it, is better
                    item.setBackground(QBrush(_GOOD if (a > b) == (r == c) else _BAD))
                self.matrix.setItem(r, c, item)
        self.matrix_note.setText("rows: true class; columns: predicted; each cell: count before → after "
                                 "(green: better, orange: worse)")
        _fit_height(self.matrix)


def _num(text: str) -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return item
