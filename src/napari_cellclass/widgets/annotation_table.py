"""The annotation table: counts per class, one row per annotation, jump and delete."""

from __future__ import annotations

from typing import Any, TYPE_CHECKING

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

if TYPE_CHECKING:
    from ..core.annotations import AnnotationStore

COLUMNS = ("id", "kind", "class", "image", "frame")


class AnnotationTable(QWidget):
    """Rows of ``store.rows()``; double-click (or Go to) asks to jump, Delete deletes."""

    jump_requested = Signal(object)  # core.annotations.ItemRow
    delete_requested = Signal(list)  # item ids

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.counts = QLabel("no annotations yet")
        self.counts.setWordWrap(True)
        self.view = QTableWidget(0, len(COLUMNS))
        self.view.setHorizontalHeaderLabels(list(COLUMNS))
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.view.horizontalHeader().setStretchLastSection(True)
        self.view.verticalHeader().setVisible(False)
        self.view.setMinimumHeight(120)
        self.jump_button = QPushButton("Go to")
        self.delete_button = QPushButton("Delete")
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.jump_button)
        row.addWidget(self.delete_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.counts)
        layout.addWidget(self.view, 1)
        layout.addLayout(row)
        self._rows: list[Any] = []
        self.view.cellDoubleClicked.connect(lambda r, _c: self._jump(r))
        self.jump_button.clicked.connect(lambda: self._jump(self.view.currentRow()))
        self.delete_button.clicked.connect(self._delete)

    def refresh(self, store: AnnotationStore) -> None:
        """Show ``store``'s counts and items (newest first: what was just labelled is on top)."""
        if store is None:
            self._rows = []
            self.view.setRowCount(0)
            self.counts.setText("no annotation file open")
            return
        counts = store.counts()
        self.counts.setText(" · ".join(f"{c}: {n}" for c, n in counts.items()) or "no classes yet")
        self._rows = list(reversed(store.rows()))
        self.view.setRowCount(len(self._rows))
        for r, row in enumerate(self._rows):
            values = (row.id, row.kind, ", ".join(row.labels), row.image_name, row.frame)
            for c, v in enumerate(values):
                item = QTableWidgetItem(str(v))
                if isinstance(v, int):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.view.setItem(r, c, item)

    def row_of(self, item_id: int) -> int:
        return next((r for r, row in enumerate(self._rows) if row.id == item_id), -1)

    def selected_ids(self) -> list[int]:
        rows = sorted({i.row() for i in self.view.selectedIndexes()})
        return [self._rows[r].id for r in rows if 0 <= r < len(self._rows)]

    def _jump(self, r: int) -> None:
        if 0 <= r < len(self._rows):
            self.jump_requested.emit(self._rows[r])

    def _delete(self) -> None:
        ids = self.selected_ids()
        if ids:
            self.delete_requested.emit(ids)
