"""The class list of the annotate panel: add, rename, recolour, remove; the current
class (what new regions and painted pixels get); keys 1–9 shown beside the names."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtCore import Signal
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import (
    QColorDialog,
    QHBoxLayout,
    QInputDialog,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .runner import notify_error

if TYPE_CHECKING:
    from ..core.annotations import AnnotationStore


def _swatch(color: str) -> QIcon:
    pix = QPixmap(14, 14)
    pix.fill(QColor(color))
    return QIcon(pix)


class ClassList(QWidget):
    """Shows ``store``'s classes; edits go straight to the store (which writes through)."""

    current_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: AnnotationStore = None
        self.list = QListWidget()
        self.list.setMaximumHeight(120)
        self.name = QLineEdit()
        self.name.setPlaceholderText("new class name")
        self.add_button = QPushButton("Add")
        self.rename_button = QPushButton("Rename")
        self.color_button = QPushButton("Colour…")
        self.remove_button = QPushButton("Remove")
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.name, 1)
        row.addWidget(self.add_button)
        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        for b in (self.rename_button, self.color_button, self.remove_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.list)
        layout.addLayout(row)
        layout.addLayout(buttons)
        self.add_button.clicked.connect(lambda: self.add(self.name.text()))
        self.name.returnPressed.connect(lambda: self.add(self.name.text()))
        self.rename_button.clicked.connect(self._rename_clicked)
        self.color_button.clicked.connect(self._color_clicked)
        self.remove_button.clicked.connect(self._remove_clicked)
        self.list.currentRowChanged.connect(self._row_changed)

    # ------------------------------------------------------------------ state
    def set_store(self, store: AnnotationStore) -> None:
        self.store = store
        self.refresh()

    def refresh(self) -> None:
        current = self.current()
        self.list.blockSignals(True)
        self.list.clear()
        names = self.store.class_names if self.store is not None else []
        for i, c in enumerate(self.store.classes if self.store is not None else []):
            key = f"{i + 1}  " if i < 9 else "    "
            self.list.addItem(QListWidgetItem(_swatch(c.color), f"{key}{c.name}"))
        row = names.index(current) if current in names else (0 if names else -1)
        self.list.setCurrentRow(row)
        self.list.blockSignals(False)
        for b in (self.rename_button, self.color_button, self.remove_button):
            b.setEnabled(bool(names))
        if (names[row] if row >= 0 else "") != current:
            self.current_changed.emit(self.current() or "")

    def current(self) -> str | None:
        row = self.list.currentRow()
        names = self.store.class_names if self.store is not None else []
        return names[row] if 0 <= row < len(names) else None

    def set_current(self, name: str) -> None:
        names = self.store.class_names if self.store is not None else []
        if name in names:
            self.list.setCurrentRow(names.index(name))

    def _row_changed(self, row: int) -> None:
        self.current_changed.emit(self.current() or "")

    # ------------------------------------------------------------------ edits
    def add(self, name: str, color: str | None = None) -> bool:
        if self.store is None:
            return False
        try:
            info = self.store.add_class(name, color)
        except Exception as err:  # noqa: BLE001 - a notification says why (e.g. duplicate name)
            notify_error(err)
            return False
        self.name.clear()
        self.refresh()
        self.set_current(info.name)
        return True

    def rename(self, old: str, new: str) -> bool:
        try:
            self.store.rename_class(old, new)
        except Exception as err:  # noqa: BLE001
            notify_error(err)
            return False
        self.refresh()
        self.set_current(new.strip())
        return True

    def set_color(self, name: str, color: str) -> bool:
        try:
            self.store.set_class_color(name, color)
        except Exception as err:  # noqa: BLE001
            notify_error(err)
            return False
        self.refresh()
        return True

    def remove(self, name: str, reassign_to: str | None = None, delete_items: bool = False) -> bool:
        try:
            self.store.remove_class(name, reassign_to=reassign_to, delete_items=delete_items)
        except Exception as err:  # noqa: BLE001
            notify_error(err)
            return False
        self.refresh()
        return True

    def _rename_clicked(self) -> None:
        old = self.current()
        if old is None:
            return
        new, ok = QInputDialog.getText(self, "Rename class", f"New name for '{old}':", text=old)
        if ok and new:
            self.rename(old, new)

    def _color_clicked(self) -> None:
        name = self.current()
        if name is None:
            return
        old = self.store.classes[self.store.class_index(name)].color
        color = QColorDialog.getColor(QColor(old), self, f"Colour of '{name}'")
        if color.isValid():
            self.set_color(name, color.name())

    def _remove_clicked(self) -> None:
        name = self.current()
        if name is None:
            return
        n = self.store.counts().get(name, 0)
        if n == 0:
            self.remove(name)
            return
        others = [c for c in self.store.class_names if c != name]
        choices = ["delete them", *[f"reassign them to '{c}'" for c in others]]
        choice, ok = QInputDialog.getItem(self, "Remove class",
                                          f"'{name}' has {n} annotation(s). What should happen to them?",
                                          choices, 0, False)
        if not ok:
            return
        if choice == choices[0]:
            if QMessageBox.question(self, "Remove class", f"Delete {n} annotation(s) of '{name}'?") \
                    == QMessageBox.StandardButton.Yes:
                self.remove(name, delete_items=True)
        else:
            self.remove(name, reassign_to=others[choices.index(choice) - 1])
