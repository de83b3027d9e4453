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
    from napari_cellclass.widgets.session import ModelChoice, Session

    session = Session()
    session.set_choice(ModelChoice("file", str(model_file)))
    viewer = make_napari_viewer()
    widget = ExplainDock(viewer, session)
    viewer.window.add_dock_widget(widget, name="Explain")
    return widget


def run(dock, qtbot):
    worker = dock.run()
    assert worker is not None
    qtbot.waitUntil(lambda: not dock.controls.running, timeout=60_000)


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
    name = f"cells · Grad-CAM · {CLASSES[int(np.argmax(probs))]}"
    assert name in viewer.layers, [l.name for l in viewer.layers]
    cam = viewer.layers[name]
    assert cam.data.shape == (48, 64)
    np.testing.assert_allclose(cam.scale, src.scale)
    np.testing.assert_allclose(cam.translate, src.translate)
    assert 0.0 <= float(cam.data.min()) and float(cam.data.max()) <= 1.0
    assert cam.blending == "additive" and cam.colormap.name == "inferno" and cam.opacity == pytest.approx(0.5)
    meta = cam.metadata["cellclass"]
    assert meta["method"] == "gradcam" and meta["source"] == "cells" and meta["effective_resolution_px"]

    n = len(viewer.layers)
    cam.colormap = "magma"  # a user's choice survives the re-run
    run(dock, qtbot)
    assert len(viewer.layers) == n and viewer.layers[name] is cam and cam.colormap.name == "magma"

    dock.target.setCurrentText("all classes")
    dock.method.setCurrentIndex(dock.method.findData("gradcam++"))
    run(dock, qtbot)
    for c in CLASSES:
        assert viewer.layers[f"cells · Grad-CAM++ · {c}"].data.shape == (48, 64)


def test_stack_map_is_placed_on_the_frame_under_the_slider(dock, qtbot):
    viewer = dock.viewer
    stack = viewer.add_image(np.stack([rgb(i) for i in range(3)]), name="movie", rgb=True, scale=(5.0, 1.0, 1.0))
    viewer.dims.set_point(0, 10.0)  # world 10 = frame 2
    dock.image.set_layer(stack)
    dock.target.setCurrentText("spread")
    run(dock, qtbot)
    cam = viewer.layers["movie · Grad-CAM · spread"]
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
    cam = viewer.layers["nlo · Grad-CAM · round"]
    assert cam.data.shape == (3, 40, 40)  # on every channel of the channel slider
    np.testing.assert_allclose(cam.scale, (1, 2, 2))
    names = [l.name for l in viewer.layers][:6]
    assert names == ["nlo · SRS", "nlo · Grad-CAM · round · SRS",
                     "nlo · TPEF", "nlo · Grad-CAM · round · TPEF",
                     "nlo · trans", "nlo · Grad-CAM · round · trans"]
    grid = viewer.canvas.grid if hasattr(viewer, "canvas") else viewer.grid
    assert grid.enabled and grid.stride == 2
    np.testing.assert_array_equal(viewer.layers["nlo · TPEF"].data, nlo.data[1])


def test_tiled_high_resolution_maps_cover_the_whole_image(dock, qtbot):
    viewer = dock.viewer
    big = viewer.add_image(rgb(3, (80, 112, 3)), name="big", rgb=True)
    dock.image.set_layer(big)
    dock.tiled.setChecked(True)
    dock.tile.setValue(32)
    run(dock, qtbot)
    cam = next(l for l in viewer.layers if l.name.startswith("big · Grad-CAM · "))
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
    from napari_cellclass.widgets.session import ModelChoice, Session

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
    for c in ("nucleus", "ER"):
        fcn = viewer.layers[f"cells · FCN · {c}"]
        assert fcn.data.shape == (4, 64, 80) and fcn.metadata["cellclass"]["method"] == "fcn"
