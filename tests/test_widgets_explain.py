"""The Explain dock in a real napari viewer (run under xvfb-run)."""

from __future__ import annotations

import numpy as np
import pytest

# as napari would: the dock modules are imported before torch (see runner.guard_torch_import)
import napari_cellclass.widgets.runner  # noqa: F401


pytestmark = pytest.mark.gui

CLASSES = ["round", "spread", "clumped"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A tiny 3-class RGB ScaffoldNet: its last feature map keeps the input's resolution."""
    from napari_cellclass import build_model, save_model

    return save_model(build_model("scaffoldnet", classes=CLASSES, input_size=(32, 32)),
                      tmp_path_factory.mktemp("models") / "scaffold.safetensors")


@pytest.fixture
def dock(make_napari_viewer, model_file):
    from napari_cellclass.widgets.explain import ExplainDock
    from napari_cellclass.app.session import ModelChoice, Session

    session = Session()
    session.set_choice(ModelChoice("file", str(model_file)))
    viewer = make_napari_viewer()
    widget = ExplainDock(viewer, session)
    viewer.window.add_dock_widget(widget, name="Explain")
    return widget


def run(dock, qtbot):
    worker = dock.run()
    assert worker is not None
    qtbot.waitUntil(lambda: not dock.controls.running and dock.feeder is None, timeout=60_000)


def notifications():
    from napari.utils.notifications import notification_manager

    return [str(n.message) for n in notification_manager.records]


def rgb(seed=0, shape=(48, 64, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_map_layer_sits_on_the_source_and_is_replaced_on_rerun(dock, qtbot):
    from napari_cellclass import load_model, predict

    viewer = dock.viewer
    src = viewer.add_image(rgb(), name="cells", rgb=True, scale=(0.5, 2.0), translate=(3.0, -4.0))
    dock.image.set_layer(src)
    run(dock, qtbot)
    probs = predict(load_model(dock.session.choice.path), src.data, device="cpu")[0]
    name = f"Grad-CAM {CLASSES[int(np.argmax(probs))]} · cells"
    assert name in viewer.layers, [l.name for l in viewer.layers]
    cam = viewer.layers[name]
    assert cam.data.shape == (48, 64)
    np.testing.assert_allclose(cam.scale, src.scale)
    np.testing.assert_allclose(cam.translate, src.translate)
    assert 0.0 <= float(cam.data.min()) and float(cam.data.max()) <= 1.0
    assert cam.blending == "translucent" and cam.colormap.name == "inferno (fading)" and cam.opacity == pytest.approx(0.5)
    assert cam.colormap.colors[0, 3] == 0.0 and cam.colormap.colors[-1, 3] == 1.0  # weak evidence: transparent
    meta = cam.metadata["cellclass"]
    assert meta["method"] == "gradcam" and meta["source"] == "cells" and meta["effective_resolution_px"]

    n = len(viewer.layers)
    cam.colormap = "magma"  # a user's choice survives the re-run
    run(dock, qtbot)
    assert len(viewer.layers) == n and viewer.layers[name] is cam and cam.colormap.name == "magma"

    dock.target.setCurrentText("all classes")
    dock.method.setCurrentIndex(dock.method.findData("gradcam++"))
    run(dock, qtbot)
    assert viewer.layers["Grad-CAM++ all classes · cells"].data.shape == (len(CLASSES), 48, 64)


def test_stack_map_is_placed_on_the_frame_under_the_slider(dock, qtbot):
    viewer = dock.viewer
    stack = viewer.add_image(np.stack([rgb(i) for i in range(3)]), name="movie", rgb=True, scale=(5.0, 1.0, 1.0))
    viewer.dims.set_point(0, 10.0)  # world 10 = frame 2
    dock.image.set_layer(stack)
    dock.target.setCurrentText("spread")
    run(dock, qtbot)
    cam = viewer.layers["Grad-CAM spread · movie"]
    assert cam.data.shape == (1, 48, 64)
    np.testing.assert_allclose(cam.translate, (10.0, 0.0, 0.0))
    np.testing.assert_allclose(cam.scale, (5.0, 1.0, 1.0))
    assert "frame 2" in dock.controls.status.text()


def test_multichannel_source_can_be_shown_beside_each_channel(dock, qtbot):
    viewer = dock.viewer
    nlo = viewer.add_image(np.random.default_rng(1).random((3, 40, 40)).astype(np.float32), name="nlo", scale=(1, 2, 2),
                           metadata={"channel_names": ["SRS", "TPEF", "trans"]})
    dock.image.set_layer(nlo)
    dock.grid.setChecked(True)
    dock.target.setCurrentText("round")
    run(dock, qtbot)
    cam = viewer.layers["Grad-CAM round · nlo"]
    assert cam.data.shape == (3, 40, 40)  # on every channel of the channel slider
    np.testing.assert_allclose(cam.scale, (1, 2, 2))
    names = [l.name for l in viewer.layers][:6]
    assert names == ["SRS · nlo", "SRS: Grad-CAM round · nlo",
                     "TPEF · nlo", "TPEF: Grad-CAM round · nlo",
                     "trans · nlo", "trans: Grad-CAM round · nlo"]
    grid = viewer.canvas.grid if hasattr(viewer, "canvas") else viewer.grid
    assert grid.enabled and grid.stride == 2
    np.testing.assert_array_equal(viewer.layers["TPEF · nlo"].data, nlo.data[1])


def test_tiled_high_resolution_maps_cover_the_whole_image(dock, qtbot):
    viewer = dock.viewer
    big = viewer.add_image(rgb(3, (80, 112, 3)), name="big", rgb=True)
    dock.image.set_layer(big)
    dock.tiled.setChecked(True)
    dock.tile.setValue(32)
    run(dock, qtbot)
    cam = next(l for l in viewer.layers if (l.name.startswith("Grad-CAM ") and l.name.endswith(" · big")))
    assert cam.data.shape == (80, 112)
    assert cam.metadata["cellclass"]["tiles"]


def test_wrong_method_for_the_model_is_a_notification(dock, qtbot):
    viewer = dock.viewer
    src = viewer.add_image(rgb(), name="cells", rgb=True)
    dock.image.set_layer(src)
    dock.method.setCurrentIndex(dock.method.findData("fcn"))
    n = len(viewer.layers)
    run(dock, qtbot)
    assert len(viewer.layers) == n
    assert any("FCN" in m or "fcn" in m for m in notifications()), notifications()[-3:]


def test_fcn_model_defaults_to_its_own_heat_maps(make_napari_viewer, qtbot, tmp_path):
    from napari_cellclass import build_model, save_model
    from napari_cellclass.widgets.explain import ExplainDock
    from napari_cellclass.app.session import ModelChoice, Session

    path = save_model(build_model("protein_fcn", classes=["nucleus", "ER"], in_chans=4, output="sigmoid",
                                  input_size=(64, 64)), tmp_path / "fcn.safetensors")
    session = Session()
    session.set_choice(ModelChoice("file", str(path)))
    session.load()  # as after a classification: the dock knows the model
    viewer = make_napari_viewer()
    dock = ExplainDock(viewer, session)
    assert dock.method.currentData() == "fcn"
    cells = viewer.add_image(np.random.default_rng(2).random((4, 64, 80)).astype(np.float32), name="cells")
    dock.image.set_layer(cells)
    dock.target.setCurrentText("all classes")
    run(dock, qtbot)
    fcn = viewer.layers["FCN all classes · cells"]
    assert fcn.data.shape == (2, 4, 64, 80) and fcn.metadata["cellclass"]["method"] == "fcn"
    assert sorted(fcn.metadata["cellclass"]["axis_classes"]) == ["ER", "nucleus"]


def _has_map_of(viewer, source: str) -> bool:
    return any(l.name.endswith(f" · {source}") and "cellclass" in l.metadata for l in viewer.layers)


def test_cancel_stops_mid_run_and_frees_the_model(make_napari_viewer, qtbot, tmp_path):
    from napari_cellclass import build_model, save_model
    from napari_cellclass.widgets.explain import ExplainDock
    from napari_cellclass.app.session import ModelChoice, Session

    path = save_model(build_model("resnet18", classes=["a", "b"], input_size=(96, 96)), tmp_path / "slow.safetensors")
    session = Session()
    session.set_choice(ModelChoice("file", str(path)))
    viewer = make_napari_viewer()
    dock = ExplainDock(viewer, session)
    src = viewer.add_image(rgb(4, (384, 384, 3)), name="big", rgb=True)
    dock.image.set_layer(src)
    dock.target.setCurrentText("a")  # a named class: one pass per tile batch, no probability pass first
    dock.tiled.setChecked(True)
    dock.tile.setValue(96)  # 7 x 7 tiles at half overlap: several batches
    n = len(viewer.layers)
    worker = dock.run()
    progressed = []
    worker.yielded.connect(lambda step: step.done and not progressed and (progressed.append(step.done), dock.controls.cancel()))
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    assert progressed, "the job never reported progress"
    assert "cancelled" in dock.controls.status.text()
    assert len(viewer.layers) == n and not _has_map_of(viewer, "big")  # no half-made map
    bundle = dock.session.cached()
    assert bundle.lock.acquire(blocking=False)  # released by the worker thread itself
    bundle.lock.release()
    assert dock.controls.run_button.isEnabled()
    assert sum(len(m._forward_hooks) + len(m._backward_hooks) for m in bundle.network.modules()) == 0


def test_a_viewer_without_an_image_layer_is_a_notification(dock, qtbot):
    viewer = dock.viewer
    viewer.add_labels(np.zeros((32, 32), np.uint8), name="masks")
    viewer.add_points(np.array([[5.0, 5.0]]), name="spots")
    assert dock.image.layer() is None  # labels and points are not offered
    assert dock.run() is None
    assert any("no image layer" in m for m in notifications()), notifications()[-3:]


def test_an_all_nan_image_is_a_notification_not_an_exception(dock, qtbot):
    viewer = dock.viewer
    nan = viewer.add_image(np.full((40, 40, 3), np.nan, np.float32), name="empty")
    dock.image.set_layer(nan)
    dock.target.setCurrentText("round")
    n = len(viewer.layers)
    run(dock, qtbot)
    assert len(viewer.layers) == n and not _has_map_of(viewer, "empty")
    assert any("empty" in m and ("NaN" in m or "finite" in m or "no valid" in m) for m in notifications()), \
        notifications()[-3:]
    assert dock.controls.run_button.isEnabled()


def test_model_channel_mismatch_says_what_to_do(dock, qtbot):
    viewer = dock.viewer  # the model takes 3 channels; this image has 2
    two = viewer.add_image(np.random.default_rng(5).random((2, 40, 40)).astype(np.float32), name="two")
    dock.image.set_layer(two)
    n = len(viewer.layers)
    run(dock, qtbot)
    assert len(viewer.layers) == n
    msgs = [m for m in notifications() if "channel" in m]
    assert msgs, notifications()[-3:]
    assert "3" in msgs[-1] and "2" in msgs[-1] and "—" in msgs[-1], msgs[-1]  # what the model needs, then the fix


def test_settings_persist_between_docks(make_napari_viewer, model_file, qtbot):
    from napari_cellclass.widgets.explain import ExplainDock
    from napari_cellclass.app.session import ModelChoice, Session

    viewer = make_napari_viewer()
    session = Session()
    session.set_choice(ModelChoice("file", str(model_file)))
    first = ExplainDock(viewer, session)
    first.method.setCurrentIndex(first.method.findData("layercam"))
    first.target.setCurrentText("clumped")
    first.tiled.setChecked(True)
    first.tile.setValue(48)
    first.grid.setChecked(True)
    first.image.set_layer(viewer.add_image(rgb(6), name="cells", rgb=True))
    run(first, qtbot)  # the target is remembered when it is used
    first.deleteLater()
    again = ExplainDock(viewer, Session())  # a new session reads the same settings file
    assert again.method.currentData() == "layercam"
    assert again.target.currentText() == "clumped"
    assert again.tiled.isChecked() and again.tile.value() == 48 and again.tile.isEnabled()
    assert again.grid.isChecked()
    again.deleteLater()


def test_choosing_a_cam_layer_by_name_changes_the_map(dock, qtbot):
    viewer = dock.viewer
    src = viewer.add_image(rgb(7), name="cells", rgb=True)
    dock.image.set_layer(src)
    dock.target.setCurrentText("round")
    run(dock, qtbot)
    cam = viewer.layers["Grad-CAM round · cells"]
    auto_meta, auto_map = dict(cam.metadata["cellclass"]), np.array(cam.data)
    bundle = dock.session.cached()
    auto = bundle.network.cam_layer
    assert auto_meta["layer"] == auto
    offered = [dock.cam_layer.itemText(i) for i in range(dock.cam_layer.count())]
    assert offered[0] == "auto" and "features.1" in offered  # filled from the loaded network
    dock.cam_layer.setCurrentText("features.1")
    run(dock, qtbot)
    meta = cam.metadata["cellclass"]
    assert viewer.layers["Grad-CAM round · cells"] is cam
    assert meta["layer"] == "features.1" and meta["layers"] == ["features.1"]
    assert not np.allclose(cam.data, auto_map)
    dock.cam_layer.setCurrentText("no_such_layer")
    run(dock, qtbot)
    assert any("no layer named 'no_such_layer'" in m for m in notifications()), notifications()[-3:]
    assert cam.metadata["cellclass"]["layer"] == "features.1"  # the failed run left the last map alone


def test_tiled_at_the_default_tile_really_tiles(dock, qtbot):
    """Tile 0 reads "model input size": tiles of the network's input, not the whole image."""
    viewer = dock.viewer
    big = viewer.add_image(rgb(4, (80, 112, 3)), name="big", rgb=True)
    dock.image.set_layer(big)
    dock.tiled.setChecked(True)
    dock.tile.setValue(0)
    assert dock.tile.text() == "model input size"
    run(dock, qtbot)
    cam = next(l for l in viewer.layers if (l.name.startswith("Grad-CAM ") and l.name.endswith(" · big")))
    tiles = cam.metadata["cellclass"]["tiles"]
    assert tiles["tile_hw"] == [32, 32] and tiles["n_tiles"] > 4


def test_all_classes_is_one_layer_with_a_class_axis_and_stays_bounded_beside_each_channel(dock, qtbot):
    """"All classes": one map layer per image with a leading class axis (the most probable
    class first, the slider named by its class) instead of one layer per class; "beside
    each channel" adds one (channel, map) pair per channel.  A 0 ms timer ticks while
    they arrive: the layers are added across event-loop turns, not in one handler."""
    import time

    from qtpy.QtCore import QTimer

    viewer = dock.viewer
    nlo = viewer.add_image(np.random.default_rng(2).random((3, 40, 40)).astype(np.float32), name="nlo",
                           metadata={"channel_names": ["SRS", "TPEF", "trans"]})
    dock.image.set_layer(nlo)
    dock.target.setCurrentText("all classes")
    run(dock, qtbot)
    cam = viewer.layers["Grad-CAM all classes · nlo"]
    assert len(viewer.layers) == 2 and cam.data.shape == (3, 3, 40, 40)  # (class, channel, y, x)
    meta = cam.metadata["cellclass"]
    probs = meta["probabilities"]
    ranked = [c for _, c in sorted(zip(probs, CLASSES), key=lambda pc: -pc[0])]
    assert meta["axis_classes"] == ranked and meta["class"] == ranked[0]
    axis = viewer.dims.ndim - cam.ndim
    assert viewer.dims.current_step[axis] == 0 and viewer.dims.axis_labels[axis] == f"class: {ranked[0]}"
    viewer.dims.set_current_step(axis, 2)
    assert viewer.dims.axis_labels[axis] == f"class: {ranked[2]}"
    assert cam.blending == "translucent" and cam.opacity <= 0.7 and viewer.layers.selection.active is not cam
    assert "3 classes on the 'class' slider" in dock.controls.status.text()

    dock.grid.setChecked(True)
    ticks: list[tuple[float, int]] = []
    beat = QTimer()
    beat.setInterval(0)
    beat.timeout.connect(lambda: ticks.append((time.perf_counter(), len(viewer.layers))))
    beat.start()
    run(dock, qtbot)
    beat.stop()
    added = 1 + 3 * 2  # the map on the source, and each channel with its one map layer
    assert len(viewer.layers) == 1 + added
    assert len({n for _, n in ticks}) >= 3  # the event loop ran between additions
    pairs = [l for l in viewer.layers if l.name.endswith(": Grad-CAM all classes · nlo")]
    assert len(pairs) == 3 and all(p.data.shape == (3, 40, 40) for p in pairs)
    grid = viewer.canvas.grid if hasattr(viewer, "canvas") else viewer.grid
    assert grid.enabled and grid.stride == 2
