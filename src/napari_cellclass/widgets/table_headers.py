"""The Classify results table made to fit a dock, whatever the number of classes.

One "top classes" column (the three most probable, every probability in its
tooltip) stands in for the per-class probability columns, which are hidden until
the user asks for them ("every class's probability"); shown, they are headed by the
class name cut short (the full name and the CSV column in the tooltip).  Long layer,
class and model names are cut at a width; their cells' tooltips have them whole.
The table's columns (and the CSV's) stay as they are: each header keeps its full
column name under ``Qt.UserRole``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QHeaderView, QTableWidget, QTableWidgetItem

SHORT = 9  # characters of a class name in a probability header
TOP = "top classes"  # the view's own column (not in the CSV)
N_TOP = 3
CAPPED = {"layer": 140, "predicted_class": 120, "model": 120, TOP: 200}  # px at most before a name is cut
TEXT = {"predicted_class": "class", "confidence": "conf."}
TIPS = {"layer": "the image layer", "frame": "the plane of a stack (0 for a single image)",
        "predicted_class": "the most probable class", "confidence": "the probability of the predicted class",
        "ood_score": "how unlike the training images this one is (higher: less alike)",
        "ood": "OOD: out of distribution, do not trust the class", "model": "the model that classified it",
        TOP: "the most probable classes; hover a cell for every probability"}


def short(name: str, n: int = SHORT) -> str:
    return name if len(name) <= n else name[:n - 1] + "…"


def column_of(view: QTableWidget, name: str) -> int:
    """The view column of table column ``name`` (-1 if absent), whatever its header says."""
    for c in range(view.columnCount()):
        head = view.horizontalHeaderItem(c)
        if head is not None and head.data(Qt.ItemDataRole.UserRole) == name:
            return c
    return -1


def label_columns(view: QTableWidget, columns: Sequence[str]) -> None:
    """Set the headers of ``columns`` (after ``setColumnCount``)."""
    for c, col in enumerate(columns):
        if col.startswith("p_"):
            item = QTableWidgetItem(short(col[2:]))
            item.setToolTip(f"probability of {col[2:]} (CSV column {col})")
        else:
            item = QTableWidgetItem(TEXT.get(col, col))
            item.setToolTip(TIPS.get(col, col))
        item.setData(Qt.ItemDataRole.UserRole, col)
        view.setHorizontalHeaderItem(c, item)


def add_top_column(view: QTableWidget, classes: Sequence[str], rows: Sequence[Any]) -> None:
    """Insert the "top classes" column after the confidence (call with sorting off)."""
    at = column_of(view, "confidence") + 1
    view.insertColumn(at)
    head = QTableWidgetItem(TOP)
    head.setToolTip(TIPS[TOP])
    head.setData(Qt.ItemDataRole.UserRole, TOP)
    view.setHorizontalHeaderItem(at, head)
    for r, row in enumerate(rows):
        order = sorted(range(len(classes)), key=lambda k: -float(row.probs[k]))
        item = QTableWidgetItem("  ".join(f"{classes[k]} {float(row.probs[k]):.2f}" for k in order[:N_TOP]))
        item.setToolTip("\n".join(f"{classes[k]}: {float(row.probs[k]):.3f}" for k in order))
        first = view.item(r, 0)
        if first is not None and row.ood:  # keep the row's out-of-distribution mark
            item.setBackground(first.background())
            item.setForeground(first.foreground())
        view.setItem(r, at, item)


def show_probabilities(view: QTableWidget, on: bool) -> None:
    """Show (or hide) the per-class probability columns."""
    for c in range(view.columnCount()):
        head = view.horizontalHeaderItem(c)
        col = head.data(Qt.ItemDataRole.UserRole) if head is not None else ""
        if isinstance(col, str) and col.startswith("p_"):
            view.setColumnHidden(c, not on)


def fit_columns(view: QTableWidget) -> None:
    """Size every column to its contents, then cut the ``CAPPED`` ones (their cells
    carry the whole text as a tooltip; the user can still widen them)."""
    header = view.horizontalHeader()
    for c in range(view.columnCount()):
        head = view.horizontalHeaderItem(c)
        col = head.data(Qt.ItemDataRole.UserRole) if head is not None else None
        if col in CAPPED:
            header.setSectionResizeMode(c, QHeaderView.ResizeMode.Interactive)
            view.resizeColumnToContents(c)
            view.setColumnWidth(c, min(view.columnWidth(c), CAPPED[col]))
            for r in range(view.rowCount()):
                cell = view.item(r, c)
                if cell is not None and not cell.toolTip():
                    cell.setToolTip(cell.text())
        else:
            header.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)


def decorate(view: QTableWidget, classes: Sequence[str], rows: Sequence[Any], all_probabilities: bool) -> None:
    """After the cells and ``label_columns``: the top-classes column, the probability
    columns shown or hidden, and the widths."""
    view.setWordWrap(False)  # one line per row: cut names end in "…", their tooltips have them whole
    if rows:
        add_top_column(view, classes, rows)
    show_probabilities(view, all_probabilities)
    fit_columns(view)
