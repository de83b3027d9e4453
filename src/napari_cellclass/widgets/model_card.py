"""The model card in the Classify dock: formatted sections (``app.card_format``) in a
read-only browser the user can resize (it sits in a splitter under the results)."""

from __future__ import annotations

from qtpy.QtWidgets import QTextBrowser

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
