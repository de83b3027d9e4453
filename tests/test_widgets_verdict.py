"""The fine-tune verdict's per-class table and confusion matrix, and readable curves
(run under xvfb-run): validation accuracy is not hidden under macro F1 when the two
coincide, and the legend never covers a plot."""

from __future__ import annotations

import numpy as np
import pytest

import napari_cellclass.widgets.runner  # noqa: F401  (as napari would: docks before torch)

CLASSES = ["round", "spread", "a very long class name"]


def _metrics(pred):
    from napari_cellclass.core.evaluation.metrics import classification_metrics

    y = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    return classification_metrics(y, np.eye(3)[pred] * 0.9 + 0.1 / 3, CLASSES)


BEFORE = [0, 1, 0, 1, 1, 0, 1, 2, 2, 0, 0, 2]
AFTER = [0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2]


def test_per_class_rows_and_confusion_pair_before_with_after():
    from napari_cellclass.app.verdict import confusion, per_class_rows

    b, a = _metrics(BEFORE), _metrics(AFTER)
    rows = per_class_rows(b, a)
    assert [r["class"] for r in rows] == CLASSES and [r["support"] for r in rows] == [4, 4, 4]
    # sklearn's figures: "round" before is predicted 5 times, 2 rightly; "a very long…" found 2 of 4, then 4
    assert rows[2]["recall"] == pytest.approx((2 / 4, 4 / 4))
    assert rows[0]["precision"] == pytest.approx((2 / 5, 3 / 3))
    true, cols, cells = confusion(b, a)
    assert true == CLASSES and cols == CLASSES
    assert [c[1] for row in cells for c in row] == [x for row in a["confusion_matrix"] for x in row]
    assert cells[0][1] == (2, 1) and sum(c[0] for row in cells for c in row) == 12
    assert confusion(None, None) is None and per_class_rows(None, None) == []


@pytest.mark.gui
def test_finetune_panel_shows_the_tables_after_a_run(make_napari_viewer, qtbot):
    from napari_cellclass.app.session import Session
    from napari_cellclass.core.training.finetune import FineTuneOutcome
    from napari_cellclass.widgets.finetune import FineTunePanel

    viewer = make_napari_viewer()
    panel = FineTunePanel(viewer, Session(), lambda: None)
    qtbot.addWidget(panel)
    assert not panel.details.isEnabled() and not panel.details.is_open()
    panel._done(FineTuneOutcome(None, None, [], False, _metrics(BEFORE), _metrics(AFTER), 36, 12, CLASSES))
    d = panel.details
    assert d.isEnabled() and d.is_open()
    t = d.per_class
    assert t.rowCount() == 3 and t.item(2, 0).text() == "a very lo…" and t.item(2, 0).toolTip() == CLASSES[2]
    assert t.item(0, 2).text() == "0.40 → 1.00" and t.item(2, 3).text() == "0.50 → 1.00" and t.item(1, 1).text() == "4"
    m = d.matrix
    assert (m.rowCount(), m.columnCount()) == (3, 3)
    assert m.item(0, 0).text() == "2 → 3" and m.item(0, 1).text() == "2 → 1"
    assert m.horizontalHeaderItem(2).toolTip() == f"predicted {CLASSES[2]}"
    assert m.item(0, 0).background().color().green() > m.item(0, 0).background().color().red()  # more correct: green
    assert "6/12" in panel.result.text()  # the counts and interval line stays above the tables
    panel._done(FineTuneOutcome(None, None, [], False, None, None, 3, 0, CLASSES))
    assert d.per_class.rowCount() == 0 and d.matrix.rowCount() == 0 and not d.isEnabled()


def _colour_pixels(img, rect, hex_color, tol=40):
    from qtpy.QtGui import QColor

    c = QColor(hex_color)
    arr = img[int(rect.top()) + 2:int(rect.bottom()) - 2, int(rect.left()) + 2:int(rect.right()) - 2, :3].astype(int)
    d = np.abs(arr - np.array([c.red(), c.green(), c.blue()])).sum(-1)
    return int((d < tol).sum())


@pytest.mark.gui
def test_curves_keep_coinciding_series_visible_and_legends_off_the_plots(qtbot):
    from qtpy.QtGui import QImage

    from napari_cellclass.widgets.curves import COLORS, TrainingCurves

    w = TrainingCurves()
    qtbot.addWidget(w)
    w.resize(480, 300)
    for e in range(1, 9):  # accuracy and macro F1 identical: the usual two-class case
        v = 0.4 + 0.07 * e
        w.add(e, {"loss": 1.0 / e, "val_loss": 1.1 / e, "val_accuracy": v, "val_macro_f1": v})
    img = w.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    arr = np.frombuffer(img.constBits().asstring(img.sizeInBytes()), np.uint8).reshape(img.height(), img.bytesPerLine())
    arr = arr[:, :img.width() * 3].reshape(img.height(), img.width(), 3)
    metrics_box = w.panel_boxes()[1]
    plot = w.plot_rect(metrics_box)
    # both colours are drawn inside the metric plot: the dashed F1 leaves the accuracy line showing
    assert _colour_pixels(arr, plot, COLORS["val_accuracy"]) > 30
    assert _colour_pixels(arr, plot, COLORS["val_macro_f1"]) > 30
    styles = [w.style(n) for n in ("val_accuracy", "val_macro_f1")]
    assert styles[0][1] != styles[1][1] and styles[0][2] != styles[1][2]  # line style and marker differ
    from qtpy.QtGui import QFontMetrics

    fm = QFontMetrics(w.font())
    for box, (_, names, _) in zip(w.panel_boxes(), w._panels()):
        rects = w.legend_rects(box, names, fm)
        assert len(rects) == len(names) == 2
        assert all(not r.intersects(w.plot_rect(box)) and box.contains(r) for r in rects)
