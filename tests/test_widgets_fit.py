"""The three docks fit a 1366x768 screen together (run under xvfb-run)."""

from __future__ import annotations

import pytest

import napari_cellclass.widgets.runner  # noqa: F401  - as napari would: docks before torch

pytestmark = pytest.mark.gui

SCREEN_H = 768


def _three(make_napari_viewer):
    """A viewer with the three docks on the right, in a 1366x768 main window."""
    import numpy as np

    from napari_cellclass.app.session import Session
    from napari_cellclass.widgets.annotate import AnnotateDock
    from napari_cellclass.widgets.classify import ClassifyDock
    from napari_cellclass.widgets.explain import ExplainDock

    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((64, 64)), name="cells")
    session = Session()
    docks = {name: viewer.window.add_dock_widget(cls(viewer, session), name=name, area="right")
             for name, cls in (("Classify", ClassifyDock), ("Explain", ExplainDock),
                               ("Annotate and fine-tune", AnnotateDock))}
    win = viewer.window._qt_window
    win.resize(1366, SCREEN_H)
    return viewer, docks, win


def test_three_docks_fit_a_1366x768_window(make_napari_viewer, qtbot):
    _, docks, win = _three(make_napari_viewer)
    qtbot.wait(50)
    heights = {n: d.minimumSizeHint().height() for n, d in docks.items()}
    # the right-hand column holds all three, stacked, with the menu and status bars
    chrome = win.menuBar().sizeHint().height() + win.statusBar().sizeHint().height()
    assert sum(heights.values()) + chrome + 3 * 8 <= SCREEN_H, heights  # was 630 + 289 + 839
    assert win.minimumSizeHint().height() <= SCREEN_H
    assert win.height() <= SCREEN_H  # the window did not grow past the screen


def test_advanced_options_start_folded_and_unfold(make_napari_viewer, qtbot):
    _, docks, _ = _three(make_napari_viewer)
    explain = docks["Explain"].widget()
    assert not explain.advanced.is_open() and not explain.tile.isVisibleTo(explain)
    explain.advanced.button.click()
    assert explain.advanced.is_open() and explain.tile.isVisibleTo(explain)
    classify = docks["Classify"].widget()
    assert not classify.advanced.is_open()
    classify.mode.setCurrentText("tiled probability map")  # tile settings now matter: shown
    assert classify.advanced.is_open()


def test_a_long_status_line_scrolls_instead_of_overlapping(make_napari_viewer, qtbot):
    from qtpy.QtCore import QPoint

    viewer, docks, _ = _three(make_napari_viewer)
    explain = docks["Explain"].widget()
    viewer.window._qt_window.show()
    explain.controls.status.setText("a very long status line " * 40)
    qtbot.wait(100)
    body = explain.scroll_area.widget()
    assert body.height() >= body.minimumSizeHint().height()  # laid out at full size; the area scrolls
    target_bottom = explain.target.mapTo(body, QPoint(0, explain.target.height())).y()
    controls_top = explain.controls.mapTo(body, QPoint(0, 0)).y()
    assert target_bottom <= controls_top  # no widget drawn over another


def _fits_its_width(name, dock):
    from qtpy.QtWidgets import QScrollArea

    areas = [a for a in dock.widget().findChildren(QScrollArea)
             if hasattr(a.parentWidget(), "scroll_area") and a.isVisible()]
    assert areas, name
    for area in areas:
        need, have = area.widget().minimumSizeHint().width(), area.viewport().width()
        assert need <= have, (name, need, have)
        assert not area.horizontalScrollBar().isVisible(), name


def test_the_docks_fit_napari_s_default_dock_width_without_sideways_scrolling(make_napari_viewer, qtbot):
    """At 1366x768 the docks were cut on the right (a long model name, the mode list and
    a long check box asked for ~520 px of a ~508 px dock): every body fits its area."""
    import numpy as np

    viewer, docks, win = _three(make_napari_viewer)
    viewer.add_image(np.zeros((4, 32, 32)), name="a layer name long enough to widen any combo box it sits in")
    win.show()
    qtbot.wait(50)
    _fits_its_width("Classify", docks["Classify"])
    _fits_its_width("Explain", docks["Explain"])
    annotate = docks["Annotate and fine-tune"]
    for tab in range(annotate.widget().tabs.count()):  # a tab's area narrows its combo boxes when shown
        annotate.widget().tabs.setCurrentIndex(tab)
        qtbot.wait(50)
        _fits_its_width(f"Annotate tab {tab}", annotate)


def test_a_dock_added_after_the_window_was_sized_is_widened_to_its_body(make_napari_viewer, qtbot):
    """The demo sizes its window, then adds the docks: the main window gave Classify its
    size hint from before the combo boxes were narrowed, ~60 px short of its body."""
    from napari_cellclass.app.session import Session
    from napari_cellclass.widgets.classify import ClassifyDock
    from napari_cellclass.widgets.explain import ExplainDock

    viewer = make_napari_viewer()
    win = viewer.window._qt_window
    win.resize(1366, SCREEN_H)
    win.show()
    session = Session()
    docks = {name: viewer.window.add_dock_widget(cls(viewer, session), name=name, area="right")
             for name, cls in (("Classify", ClassifyDock), ("Explain", ExplainDock))}
    qtbot.wait(100)
    for name, dock in docks.items():
        _fits_its_width(name, dock)
