"""The Classify dock's model card as formatted sections in a resizable area, and a
results table whose probability columns fit the dock (run under xvfb-run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import napari_cellclass.widgets.runner  # noqa: F401  (as napari would: docks before torch)


@pytest.fixture(scope="module")
def builtin_card():
    import napari_cellclass.builtin as B
    from napari_cellclass.core.models.modelfile import load_model

    return load_model(Path(B.__file__).parent / "default_model.safetensors").card()


def test_card_sections_group_every_line_in_reading_order(builtin_card):
    from napari_cellclass.app.card_format import card_html, card_sections

    sections = card_sections(builtin_card)
    titles = [t for t, _ in sections]
    assert titles[:4] == ["Model", "Input", "Trust", "Training"] and "Provenance details" in titles
    assert sum(len(rows) for _, rows in sections) == len([ln for ln in builtin_card.splitlines() if ln.strip()])
    keys = dict(sections)
    assert keys["Trust"][0][0] == "no OOD statistics in this model" and any(k == "calibration" for k, _ in keys["Trust"])
    assert "More" not in titles  # every line of the card has its section
    assert any(k == "versions" for k, _ in keys["Provenance details"])
    page = card_html(builtin_card)
    assert page.count("<h4") == len(sections)
    assert '{&quot;' not in page and "<li><b>torch</b>:" in page  # JSON as nested lists, not raw text


def test_card_text_is_escaped_and_a_cut_record_is_marked():
    from napari_cellclass.app.card_format import card_html

    page = card_html('description: <img src=x onerror=alert(1)>\nmetrics: {"val": {"accuracy": 1.0, "cut')
    assert "<img" not in page and "&lt;img" in page and "(cut)" in page


@pytest.mark.gui
def test_card_is_formatted_and_resizable_in_the_dock(make_napari_viewer, qtbot, builtin_card):
    from qtpy.QtWidgets import QSplitter

    from napari_cellclass.app.session import Session
    from napari_cellclass.widgets.classify import ClassifyDock

    viewer = make_napari_viewer()
    dock = ClassifyDock(viewer, Session())
    viewer.window.add_dock_widget(dock, name="Classify")
    dock.card.setPlainText(builtin_card)
    assert dock.card.toPlainText() == builtin_card  # what the card says, unchanged
    shown = dock.card.document().toPlainText()
    assert "Provenance details" in shown and '{"' not in shown
    assert dock.card.maximumHeight() > 10_000  # no fixed 150 px box
    splitter = dock.splitter
    assert isinstance(splitter, QSplitter) and splitter.indexOf(dock.card.parentWidget()) == 1
    total = sum(splitter.sizes())
    splitter.setSizes([total // 4, total - total // 4])
    qtbot.waitUntil(lambda: splitter.sizes()[1] > total // 2)
    assert dock.card.height() > total // 2 - 60  # the card grew with its handle


def _table(n_classes):
    from napari_cellclass.app.tables import PredictionTable

    classes = ["senescent fibroblast", "proliferating fibroblast", "quiescent", "apoptotic",
               *[f"class {k}" for k in range(n_classes - 4)]]
    table = PredictionTable(classes, "a-model-with-a-rather-long-file-name.safetensors")
    rng = np.random.default_rng(0)
    for i in range(6):
        p = rng.dirichlet(np.ones(n_classes))
        table.add("senescence NLO (synthetic) · COLO-704 · transmission", i, classes[int(p.argmax())], p)
    return table


def _visible_width(view):
    return sum(view.columnWidth(c) for c in range(view.columnCount()) if not view.isColumnHidden(c))


@pytest.mark.gui
def test_probability_columns_fit_the_dock_without_scrolling(make_napari_viewer, qtbot):
    from qtpy.QtCore import Qt

    from napari_cellclass.app.session import Session
    from napari_cellclass.widgets.classify import ClassifyDock
    from napari_cellclass.widgets.table_headers import TOP, column_of

    viewer = make_napari_viewer()
    dock = ClassifyDock(viewer, Session())
    viewer.window.add_dock_widget(dock, name="Classify")
    widths = {}
    for n in (4, 14):
        dock.table = table = _table(n)
        dock._fill_view()
        view = dock.view
        full = [view.horizontalHeaderItem(c).data(Qt.ItemDataRole.UserRole) for c in range(view.columnCount())]
        assert [c for c in full if c != TOP] == table.columns  # the CSV's columns, kept under each header
        p0 = full.index("p_senescent fibroblast")
        assert all(view.isColumnHidden(c) for c in range(p0, p0 + n))  # folded into "top classes"
        top = column_of(view, TOP)
        assert top == full.index("confidence") + 1
        cell = view.item(0, top)
        row = table.rows[0]
        best = int(np.argmax(row.probs))
        assert cell.text().startswith(f"{table.classes[best]} {row.probs[best]:.2f}") and cell.text().count(" 0.") <= 3
        assert len(cell.toolTip().splitlines()) == n  # every probability on hover
        assert view.item(0, full.index("layer")).toolTip() == "senescence NLO (synthetic) · COLO-704 · transmission"
        assert view.horizontalHeaderItem(full.index("predicted_class")).text() == "class"
        widths[n] = _visible_width(view)
        # the class, its confidence and the top classes start within a dock 520 px wide
        assert view.columnViewportPosition(top) < 520 - 60
    print("VISIBLE WIDTHS", widths)
    assert widths[14] < widths[4] + 90  # ten more classes: not one probability column wider
    dock.all_probs.setChecked(True)  # asked for: every probability, headed by its class cut short
    p0 = column_of(dock.view, "p_senescent fibroblast")
    head = dock.view.horizontalHeaderItem(p0)
    assert not dock.view.isColumnHidden(p0) and head.text() == "senescen…"
    assert head.toolTip().startswith("probability of senescent fibroblast")
    assert dock.view.columnWidth(p0) < 110
