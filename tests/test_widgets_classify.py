"""The Classify dock in a real napari viewer (run under xvfb-run)."""

from __future__ import annotations

import csv
import time

import numpy as np
import pytest

# as napari would: the dock modules are imported before torch (see runner.guard_torch_import)
import napari_cellclass.widgets.runner  # noqa: F401

pytestmark = pytest.mark.gui

CLASSES = ["round", "spread", "clumped"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A tiny 3-class RGB model file (resnet18 at 32x32, random weights)."""
    from napari_cellclass import build_model, save_model

    return save_model(build_model("resnet18", classes=CLASSES, input_size=(32, 32)),
                      tmp_path_factory.mktemp("models") / "tiny.safetensors")


@pytest.fixture
def session(model_file):
    from napari_cellclass.app.session import ModelChoice, Session

    s = Session()
    s.set_choice(ModelChoice("file", str(model_file)))
    return s


@pytest.fixture
def dock(make_napari_viewer, session):
    from napari_cellclass.widgets.classify import ClassifyDock

    viewer = make_napari_viewer()
    widget = ClassifyDock(viewer, session)
    viewer.window.add_dock_widget(widget, name="Classify")
    return widget


def wait_done(qtbot, dock, timeout=60_000):
    qtbot.waitUntil(lambda: not dock.controls.running, timeout=timeout)


def notifications():
    from napari.utils.notifications import notification_manager

    return [str(n.message) for n in notification_manager.records]


def rgb(seed=0, shape=(48, 64, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_classify_sample_layer_fills_table_metadata_name_and_csv(dock, qtbot, tmp_path, model_file):
    from napari_cellclass import load_model, predict

    viewer = dock.viewer
    layer = viewer.add_image(rgb(), name="cells", rgb=True, scale=(0.5, 0.5))
    dock.layers.set_selected([layer])
    assert dock.run() is not None
    wait_done(qtbot, dock)

    meta = layer.metadata["cellclass"]
    preds = meta["predictions"]
    expected = predict(load_model(model_file), layer.data, device="cpu")[0]
    np.testing.assert_allclose([preds[f"p_{c}"][0] for c in CLASSES], expected, atol=1e-5)
    label = CLASSES[int(np.argmax(expected))]
    assert preds["predicted_class"] == [label]
    assert layer.name.startswith(f"cells · {label} (")
    # + ood_score, ood, model, and the view's own "top classes" column
    assert dock.view.rowCount() == 1 and dock.view.columnCount() == 4 + len(CLASSES) + 3 + 1
    assert "classes (3" in dock.card.toPlainText()

    path = dock.export_csv(tmp_path / "predictions.csv")
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 1 and rows[0]["layer"] == "cells" and rows[0]["predicted_class"] == label
    assert rows[0]["model"] == "tiny.safetensors"
    np.testing.assert_allclose(float(rows[0]["p_spread"]), expected[1], atol=1e-5)

    blocked = tmp_path / "a file"
    blocked.write_text("not a folder")
    assert dock.export_csv(blocked / "predictions.csv") is None  # a notification, not a traceback
    assert any("cannot write" in m for m in notifications())


def test_stack_gets_one_row_per_frame_and_the_table_follows_the_slider(dock, qtbot):
    viewer = dock.viewer
    stack = np.stack([rgb(i) for i in range(4)])  # (T, H, W, 3)
    layer = viewer.add_image(stack, name="movie", rgb=True)
    dock.layers.set_selected([layer])
    dock.run()
    wait_done(qtbot, dock)

    preds = layer.metadata["cellclass"]["predictions"]
    assert preds["frame"] == [0, 1, 2, 3]
    assert dock.view.rowCount() == 4

    viewer.dims.set_point(0, 2)
    qtbot.waitUntil(lambda: dock.view.currentRow() >= 0)
    row = dock.view.currentRow()
    assert dock.view.item(row, 0).text() == "movie" and int(dock.view.item(row, 1).text()) == 2
    assert layer.name == f"movie · {preds['predicted_class'][2]} ({preds['confidence'][2]:.0%})"

    # re-running replaces the layer's rows instead of appending
    dock.run()
    wait_done(qtbot, dock)
    assert dock.view.rowCount() == 4 and layer.metadata["cellclass"]["base_name"] == "movie"


def test_several_layers_and_a_channel_choice_for_an_ambiguous_stack(dock, qtbot):
    viewer = dock.viewer
    a = viewer.add_image(rgb(1), name="a", rgb=True)
    grey = viewer.add_image(np.random.default_rng(3).random((5, 40, 40)).astype(np.float32), name="planes")
    dock.layers.set_selected([a, grey])
    dock.run()
    wait_done(qtbot, dock)
    # (5, 40, 40) for an RGB model: channels or planes? skipped with a message that says what to do
    assert "cellclass" in a.metadata and "cellclass" not in grey.metadata
    assert any("planes" in m and "channel picker" in m for m in notifications())

    dock.layers.set_selected([grey])
    assert dock.channels.isVisibleTo(dock)
    dock.channels.set_axis("none")  # "a stack of greyscale planes"
    dock.run()
    wait_done(qtbot, dock)
    assert grey.metadata["cellclass"]["predictions"]["frame"] == [0, 1, 2, 3, 4]


def test_channel_picker_feeds_chosen_channels(dock, qtbot):
    viewer = dock.viewer
    four = viewer.add_image(np.random.default_rng(4).random((4, 40, 40)).astype(np.float32), name="four")
    dock.layers.set_selected([four])
    dock.channels.set_axis(0, channels=[0, 2])  # two channels for a 3-channel model: refused
    dock.run()
    wait_done(qtbot, dock)
    assert "cellclass" not in four.metadata
    assert any("2 channel(s) chosen but the model expects 3" in m for m in notifications())
    dock.channels.set_axis(0, channels=[0, 1, 3])
    dock.run()
    wait_done(qtbot, dock)
    assert four.metadata["cellclass"]["predictions"]["frame"] == [0]


def test_bad_layer_gives_a_notification_not_an_exception(dock, qtbot):
    viewer = dock.viewer
    tiny = viewer.add_image(np.zeros((4, 4), np.float32), name="tiny")
    viewer.add_labels(np.zeros((32, 32), np.int32), name="labels")  # not an image: not offered
    assert [l.name for l in dock.layers.available()] == ["tiny"]
    dock.layers.set_selected([tiny])
    dock.run()
    wait_done(qtbot, dock)
    assert any("4x4 px" in m for m in notifications())
    assert "cellclass" not in tiny.metadata and dock.view.rowCount() == 0

    dock.layers.set_selected([])
    assert dock.run() is None  # nothing selected: a message, no run


def test_missing_model_file_is_a_readable_notification(dock, qtbot, tmp_path):
    from napari_cellclass.app.session import ModelChoice

    layer = dock.viewer.add_image(rgb(), rgb=True)
    dock.layers.set_selected([layer])
    dock.session.set_choice(ModelChoice("file", str(tmp_path / "gone.safetensors")))
    dock.run()
    wait_done(qtbot, dock)
    assert any("does not exist" in m for m in notifications())
    assert "does not exist" in dock.controls.status.text()


def test_tiled_probability_map_layers_sit_on_the_source(dock, qtbot):
    from napari_cellclass.core.inference.tiling import tile_grid

    viewer = dock.viewer
    big = viewer.add_image(rgb(5, (96, 128, 3)), name="big", rgb=True, scale=(2.0, 2.0), translate=(10.0, 20.0))
    dock.layers.set_selected([big])
    dock.mode.setCurrentText("tiled probability map")
    dock.tile.setValue(32)
    dock.overlap.setValue(0.5)
    dock.run()
    wait_done(qtbot, dock)
    grid = tile_grid((96, 128), 32, 0.5)
    (sy, sx), (ty, tx) = grid.scale_translate()
    maps = [viewer.layers[f"p({c}) · big"] for c in CLASSES]
    total = sum(m.data for m in maps)
    np.testing.assert_allclose(total, 1.0, atol=1e-4)  # softmax over classes in every cell
    for m in maps:
        assert m.data.shape == grid.map_hw and m.blending == "additive"
        np.testing.assert_allclose(m.scale, (2 * sy, 2 * sx))
        np.testing.assert_allclose(m.translate, (10 + 2 * ty, 20 + 2 * tx))
    n_layers = len(viewer.layers)
    dock.run()
    wait_done(qtbot, dock)
    assert len(viewer.layers) == n_layers  # replaced, not piled up


def _slow_session(tmp_path):
    from napari_cellclass import build_model, save_model
    from napari_cellclass.app.session import ModelChoice, Session

    path = save_model(build_model("resnet18", classes=["a", "b"], input_size=(160, 160)), tmp_path / "slow.safetensors")
    s = Session()
    s.set_choice(ModelChoice("file", str(path)))
    return s


def test_cancel_stops_mid_run_and_frees_the_model(make_napari_viewer, qtbot, tmp_path):
    from napari_cellclass.widgets.classify import ClassifyDock

    viewer = make_napari_viewer()
    dock = ClassifyDock(viewer, _slow_session(tmp_path))
    layer = viewer.add_image(np.random.default_rng(0).random((24, 64, 64)).astype(np.float32), name="long")
    dock.layers.set_selected([layer])
    dock.channels.set_axis("none")
    dock.batch.setValue(2)
    worker = dock.run()
    progressed = []
    worker.yielded.connect(lambda step: step.done and not progressed and (progressed.append(step.done), dock.controls.cancel()))
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    assert progressed, "the job never reported progress"
    assert "cancelled" in dock.controls.status.text()
    assert "cellclass" not in layer.metadata  # the layer result only arrives when the layer is done
    bundle = dock.session.cached()
    assert bundle.lock.acquire(blocking=False)  # released by the worker thread itself
    bundle.lock.release()
    assert dock.controls.run_button.isEnabled()


def test_viewer_stays_responsive_during_a_long_inference(make_napari_viewer, qtbot, tmp_path):
    from qtpy.QtCore import QTimer

    from napari_cellclass.widgets.classify import ClassifyDock

    viewer = make_napari_viewer()
    dock = ClassifyDock(viewer, _slow_session(tmp_path))
    layer = viewer.add_image(np.random.default_rng(0).random((16, 64, 64)).astype(np.float32), name="long")
    dock.layers.set_selected([layer])
    dock.channels.set_axis("none")
    dock.batch.setValue(2)
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    worker = dock.run()
    started = time.perf_counter()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    ended = time.perf_counter()
    timer.stop()
    during = [t for t in ticks if started <= t <= ended]
    gaps = np.diff(during) if len(during) > 1 else np.array([ended - started])
    print(f"inference {ended - started:.2f} s, {len(during)} heartbeats, max gap {gaps.max() * 1000:.0f} ms")
    assert len(layer.metadata["cellclass"]["predictions"]["frame"]) == 16
    assert len(during) >= 3, "the Qt event loop did not run while the model worked"


def test_settings_persist_between_docks(make_napari_viewer, session):
    from napari_cellclass.widgets.classify import ClassifyDock
    from napari_cellclass.app.session import Session

    viewer = make_napari_viewer()
    first = ClassifyDock(viewer, session)
    first.batch.setValue(7)
    first.mode.setCurrentText("tiled probability map")
    first.model.device.setCurrentText("cpu")
    first.deleteLater()
    again = ClassifyDock(viewer, Session())  # a new session reads the same settings file
    assert again.batch.value() == 7
    # the mode is not remembered: a tiled map from last session would silently give no table
    assert again.mode.currentText() == "whole image (resized to the model input)"
    assert again.session.device == "cpu"
    assert again.session.choice == session.choice  # the model file chosen last time
    again.deleteLater()


def test_docks_share_the_session_and_its_fine_tuned_model(make_napari_viewer, qtbot):
    from napari_cellclass import build_model
    from napari_cellclass.widgets.classify import ClassifyDock
    from napari_cellclass.widgets.explain import ExplainDock
    from napari_cellclass.app.session import session_for

    viewer = make_napari_viewer()
    classify = ClassifyDock(viewer)
    explain = ExplainDock(viewer)
    assert classify.session is explain.session is session_for(viewer)
    tuned = build_model("resnet18", classes=["x", "y"], input_size=(32, 32))
    classify.session.set_fine_tuned(tuned)
    for picker in (classify.model, explain.model):
        assert picker.combo.currentText() == "model fine-tuned in this session"
    layer = viewer.add_image(rgb(), rgb=True, name="img")
    classify.layers.set_selected([layer])
    classify.run()
    wait_done(qtbot, classify)
    assert layer.metadata["cellclass"]["classes"] == ["x", "y"]
    assert "y" in [explain.target.itemText(i) for i in range(explain.target.count())]


# ------------------------------------------------------------------ recent model files and the model card
def _combo_paths(picker):
    from qtpy.QtCore import Qt

    return [picker.combo.itemData(i, Qt.ItemDataRole.ToolTipRole) for i in range(picker.combo.count())]


def test_a_loaded_model_file_is_in_the_recent_list_of_a_new_dock(make_napari_viewer, model_file, tmp_path, monkeypatch):
    from napari_cellclass import build_model, save_model
    from napari_cellclass.widgets.classify import ClassifyDock
    from napari_cellclass.widgets.pickers import _BROWSE, ModelPicker
    from napari_cellclass.app.session import ModelChoice, Session

    other = save_model(build_model("scaffoldnet", classes=CLASSES, input_size=(32, 32)), tmp_path / "other.safetensors")
    viewer = make_napari_viewer()
    first = ClassifyDock(viewer, Session())
    picker = first.model
    assert picker.session.settings.recent_models() == []
    for path in (model_file, other):  # as the user does: "Choose a model file…", then a file in the dialog
        monkeypatch.setattr(ModelPicker, "browse", lambda self, p=path: str(p))
        browse = picker.combo.findText(_BROWSE)
        picker.combo.setCurrentIndex(browse)
        picker.combo.activated.emit(browse)
        assert picker.session.choice == ModelChoice("file", str(path))
        assert picker.combo.currentText() == path.name
    assert picker.session.settings.recent_models() == [str(other.resolve()), str(model_file.resolve())]  # newest first
    assert _combo_paths(picker).count(str(other)) == 1  # the current file is listed once, not twice
    first.deleteLater()

    again = ClassifyDock(viewer, Session())  # a new session reads the same settings file
    labels = [again.model.combo.itemText(i) for i in range(again.model.combo.count())]
    assert labels == ["built-in default model", "other.safetensors", model_file.name, _BROWSE]
    assert again.model.combo.currentText() == "other.safetensors" and again.session.choice.path == str(other)
    older = labels.index(model_file.name)  # choosing an older recent file makes it the model
    again.model.combo.setCurrentIndex(older)
    again.model.combo.activated.emit(older)
    assert again.session.choice == ModelChoice("file", str(model_file.resolve()))
    assert again.session.settings.recent_models()[0] == str(model_file.resolve())
    again.deleteLater()


def test_model_card_shows_training_provenance_and_metrics(make_napari_viewer, qtbot, tmp_path):
    from napari_cellclass import save_model
    from napari_cellclass.core.training.api import train
    from napari_cellclass.widgets.classify import ClassifyDock
    from napari_cellclass.app.session import ModelChoice, Session

    rng = np.random.default_rng(0)
    items = [(rng.integers(*((0, 90) if i % 2 == 0 else (140, 255)), (1, 32, 32)).astype(np.uint8), ["dim", "bright"][i % 2])
             for i in range(8)]
    gen = train("senescence_cnn", items, classes=["dim", "bright"], channel_axis=0, input_size=(32, 32), pretrained=False,
                device="cpu", batch_size=4, epochs=1, val_fraction=0.5)
    from test_train import _run  # drains a generator: (events, result)

    _, result = _run(gen)
    path = save_model(result.bundle, tmp_path / "trained.safetensors")
    session = Session()
    session.set_choice(ModelChoice("file", str(path)))
    dock = ClassifyDock(make_napari_viewer(), session)
    assert dock.show_card() is not None
    qtbot.waitUntil(lambda: not dock.controls.running, timeout=60_000)
    card = dock.card.toPlainText().splitlines()
    trained = next(l for l in card if l.startswith("training: "))
    assert "1 epoch(s)" in trained and "on cpu" in trained and "from architecture senescence_cnn" in trained
    assert next(l for l in card if l.startswith("training data: ")).startswith("training data: 4 train / 4 val images")
    metrics = next(l for l in card if l.startswith("training metrics: "))
    acc = result.bundle.provenance["training"]["metrics"]["val_accuracy"]
    assert f"val_accuracy {acc:.3f}" in metrics and "val_macro_f1" in metrics
    assert any(l.startswith("training recipe: optimizer") for l in card)


# ------------------------------------------------------------------ sorting, progress, the plugin's own samples
def _column_index(dock, name):
    from napari_cellclass.widgets.table_headers import column_of

    c = column_of(dock.view, name)  # headers are short ("class", "conf."); the column name is kept under them
    assert c >= 0, name
    return c


def _column(dock, name):
    c = _column_index(dock, name)
    return [dock.view.item(r, c).text() for r in range(dock.view.rowCount())]


def test_table_sorts_numeric_columns_by_value(dock, qtbot):
    from qtpy.QtCore import Qt

    viewer = dock.viewer
    movie = viewer.add_image(np.stack([rgb(10 + i, (32, 32, 3)) for i in range(12)]), name="movie", rgb=True)
    single = viewer.add_image(rgb(3, (32, 32, 3)), name="single", rgb=True)
    dock.layers.set_selected([movie, single])
    dock.run()
    wait_done(qtbot, dock)
    assert dock.view.rowCount() == 13

    dock.view.sortItems(_column_index(dock, "frame"), Qt.SortOrder.AscendingOrder)  # frame: as text "10" < "2"
    frames = [int(f) for f, layer in zip(_column(dock, "frame"), _column(dock, "layer")) if layer == "movie"]
    assert frames == list(range(12))
    dock.view.sortItems(_column_index(dock, "frame"), Qt.SortOrder.DescendingOrder)
    assert [int(f) for f in _column(dock, "frame")][:12] == list(range(11, -1, -1))

    conf_col = _column_index(dock, "confidence")
    dock.view.sortItems(conf_col, Qt.SortOrder.DescendingOrder)
    shown = [float(c) for c in _column(dock, "confidence")]
    assert shown == sorted(shown, reverse=True)
    # whole rows move together: each row's confidence is the value classified for its layer and frame
    preds = {layer.metadata["cellclass"]["base_name"]: layer.metadata["cellclass"]["predictions"] for layer in (movie, single)}
    for layer, frame, conf, cls in zip(_column(dock, "layer"), _column(dock, "frame"), shown,
                                       _column(dock, "predicted_class")):
        i = preds[layer]["frame"].index(int(frame))
        assert conf == pytest.approx(preds[layer]["confidence"][i], abs=5e-4) and cls == preds[layer]["predicted_class"][i]
    # the items hold the numbers themselves, so ties in the shown text still order by value
    items = [dock.view.item(r, conf_col) for r in range(dock.view.rowCount())]
    assert all(a.value >= b.value for a, b in zip(items, items[1:]))


def test_number_items_compare_by_value_not_text():
    from qtpy.QtWidgets import QTableWidgetItem

    from napari_cellclass.widgets.classify import _NumberItem

    assert _NumberItem(2) < _NumberItem(10) and not _NumberItem(10) < _NumberItem(2)  # text: "10" < "2"
    assert _NumberItem(0.9) < _NumberItem(1.0) and _NumberItem(0.0999) < _NumberItem(0.1)
    assert _NumberItem(0.10004) < _NumberItem(0.10006)  # both show "0.100"
    assert QTableWidgetItem("a") < QTableWidgetItem("b")  # text cells still sort as text


def test_a_run_shows_a_napari_progress_bar_closed_at_the_end(make_napari_viewer, qtbot, tmp_path):
    from napari.utils import progress

    from napari_cellclass.widgets.classify import ClassifyDock

    viewer = make_napari_viewer()
    dock = ClassifyDock(viewer, _slow_session(tmp_path))
    layer = viewer.add_image(np.random.default_rng(0).random((8, 64, 64)).astype(np.float32), name="long")
    dock.layers.set_selected([layer])
    dock.channels.set_axis("none")
    dock.batch.setValue(2)
    before = set(progress._all_instances)
    worker = dock.run()
    pbar = worker.pbar
    assert isinstance(pbar, progress) and pbar in progress._all_instances and pbar not in before
    seen = []  # connected after the dock's handler: sees the bar as each step left it
    worker.yielded.connect(lambda step: seen.append((pbar in progress._all_instances, pbar.n, pbar.total, pbar.desc)))
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    assert len(layer.metadata["cellclass"]["predictions"]["frame"]) == 8
    mid = [s for s in seen if 0 < s[1] < 8]
    assert mid, f"no step reported partial progress: {seen}"
    assert all(alive and total == 8 and desc.startswith("classify") for alive, _, total, desc in mid)
    assert seen[-1][1] == 8
    qtbot.waitUntil(lambda: pbar not in progress._all_instances, timeout=10_000)  # closed: gone from the activity dock
    assert set(progress._all_instances) == before


def test_classify_the_plugins_cell_line_sample_with_the_builtin_model(make_napari_viewer, qtbot, tmp_path):
    from napari_cellclass import load_model, predict
    from napari_cellclass.builtin import default_model_path
    from napari_cellclass.widgets.classify import ClassifyDock
    from napari_cellclass.app.session import Session

    viewer = make_napari_viewer()
    dock = ClassifyDock(viewer, Session())  # the built-in default model
    (layer,) = viewer.open_sample("napari-cellclass", "cell-line")
    assert layer.rgb and layer.metadata["cellclass_sample"]["task"] == "cell-line"
    dock.layers.set_selected([layer])
    dock.run()
    wait_done(qtbot, dock, timeout=120_000)
    meta = layer.metadata["cellclass"]
    assert meta["predictions"]["frame"] == [0] and layer.metadata["cellclass_sample"]["task"] == "cell-line"
    bundle = load_model(default_model_path())
    assert meta["classes"] == bundle.classes
    expected = predict(bundle, layer.data, device="cpu")[0]
    np.testing.assert_allclose([meta["predictions"][f"p_{c}"][0] for c in bundle.classes], expected, atol=1e-4)
    rows = list(csv.DictReader(dock.export_csv(tmp_path / "p.csv").open()))
    assert len(rows) == 1 and rows[0]["layer"] == "cell-line (synthetic)"
    assert rows[0]["predicted_class"] == bundle.classes[int(np.argmax(expected))]


def test_classify_the_real_greyscale_cell_sample(dock, qtbot, tmp_path):
    (layer,) = dock.viewer.open_sample("napari-cellclass", "cell")  # skimage.data.cell, 2-D greyscale
    assert layer.data.ndim == 2 and not layer.rgb
    dock.layers.set_selected([layer])
    dock.run()
    wait_done(qtbot, dock)
    preds = layer.metadata["cellclass"]["predictions"]
    assert preds["frame"] == [0] and preds["predicted_class"][0] in CLASSES
    rows = list(csv.DictReader(dock.export_csv(tmp_path / "cell.csv").open()))
    assert len(rows) == 1 and rows[0]["layer"] == "cell" and rows[0]["predicted_class"] == preds["predicted_class"][0]


def test_classify_the_plugins_stack_sample_one_row_per_frame(dock, qtbot, tmp_path):
    viewer = dock.viewer
    (layer,) = viewer.open_sample("napari-cellclass", "cell-line-stack")
    n = layer.data.shape[0]
    assert layer.rgb and layer.data.ndim == 4 and n == 4
    dock.layers.set_selected([layer])
    dock.run()
    wait_done(qtbot, dock)
    preds = layer.metadata["cellclass"]["predictions"]
    assert preds["frame"] == list(range(n)) and dock.view.rowCount() == n
    rows = list(csv.DictReader(dock.export_csv(tmp_path / "stack.csv").open()))
    assert [int(r["frame"]) for r in rows] == list(range(n))
    assert [r["predicted_class"] for r in rows] == preds["predicted_class"]
    for frame in (3, 1):
        viewer.dims.set_point(0, frame)
        row = dock.view.currentRow()
        assert int(dock.view.item(row, 1).text()) == frame
        assert layer.name.startswith(f"cell-line stack (synthetic) · {preds['predicted_class'][frame]} (")
