"""The model card in the Classify dock: formatted sections (``app.card_format``) in a
read-only browser the user can resize (it sits in a splitter under the results)."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QGroupBox, QHBoxLayout, QSplitter, QTextBrowser, QVBoxLayout, QWidget

from ..app.card_format import card_html


class ModelCardView(QTextBrowser):
    """Takes the card text (``setPlainText``, as the jobs hand it over) and shows it
    formatted; ``toPlainText`` gives the card text back unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.setOpenLinks(False)  # a card's text is data, never a link to follow
        self.setMinimumHeight(60)
        self._text = ""

    def setPlainText(self, text: str) -> None:
        self._text = text or ""
        self.setHtml(card_html(self._text))

    def toPlainText(self) -> str:
        return self._text


def results_and_card(view: QWidget, under: list[QWidget], buttons: list[QWidget], card: list[QWidget]) -> QSplitter:
    """The results table (with ``under`` it and a row of ``buttons``) above the model
    card box (``card`` widgets), in a splitter whose handle resizes the card."""
    box = QGroupBox("model card (drag the bar above to resize)")
    card_layout = QVBoxLayout(box)
    for w in card:
        card_layout.addWidget(w)
    results = QWidget()
    inner = QVBoxLayout(results)
    inner.setContentsMargins(0, 0, 0, 0)
    inner.addWidget(view, 1)
    for w in under:
        inner.addWidget(w)
    row = QHBoxLayout()
    for i, w in enumerate(buttons):
        row.addWidget(w, 1 if i == len(buttons) - 1 else 0)
    inner.addLayout(row)
    splitter = QSplitter(Qt.Orientation.Vertical)
    splitter.addWidget(results)
    splitter.addWidget(box)
    splitter.setChildrenCollapsible(False)
    return splitter
