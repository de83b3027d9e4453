"""Multiscale (pyramid) layers in the Classify and Explain docks (run under xvfb-run)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.transform import resize

# as napari would: the dock modules are imported before torch (see runner.guard_torch_import)
import napari_cellclass.widgets.runner  # noqa: F401

pytestmark = pytest.mark.gui

CLASSES = ["round", "spread", "clumped"]


def pyramid(h=256, seed=0):
    rng = np.random.default_rng(seed)
    img = (resize(rng.random((h // 32, h // 32, 3)), (h, h, 3), order=3) * 255).astype(np.uint8)
    levels = [img]
    while levels[-1].shape[0] > 32:
        s = levels[-1].shape[0] // 2
        levels.append(resize(levels[-1], (s, s, 3), anti_aliasing=True, preserve_range=True).astype(np.uint8))
    return levels  # 256, 128, 64, 32


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    from napari_cellclass import build_model, save_model

    return save_model(build_model("resnet18", classes=CLASSES, input_size=(32, 32)),
                      tmp_path_factory.mktemp("models") / "tiny.safetensors")


@pytest.fixture
def session(model_file):
    from napari_cellclass.app.session import ModelChoice, Session

    s = Session()
    s.set_choice(ModelChoice("file", str(model_file)))
    return s


def test_classify_dock_on_a_multiscale_layer_matches_level0(make_napari_viewer, session, qtbot, model_file):
    from napari_cellclass import load_model, predict
    from napari_cellclass.core.inference.tiling import tile_grid
    from napari_cellclass.widgets.classify import ClassifyDock

    viewer = make_napari_viewer()
    dock = ClassifyDock(viewer, session)
    viewer.window.add_dock_widget(dock, name="Classify")
    levels = pyramid()
    layer = viewer.add_image(levels, multiscale=True, rgb=True, name="slide", scale=(0.5, 0.5), translate=(4.0, 6.0))
    dock.layers.set_selected([layer])
    assert dock.run() is not None
    qtbot.waitUntil(lambda: not dock.controls.running, timeout=120_000)
    preds = layer.metadata["cellclass"]["predictions"]
    expected = predict(load_model(model_file), levels[0], device="cpu")[0]
    np.testing.assert_allclose([preds[f"p_{c}"][0] for c in CLASSES], expected, atol=0.02)

    dock.mode.setCurrentText("tiled probability map")
    dock.tile.setValue(32)
    dock.overlap.setValue(0.5)
    dock.run()
    qtbot.waitUntil(lambda: not dock.controls.running, timeout=120_000)
    grid = tile_grid((256, 256), 32, 0.5)  # level 0: no training pixel size recorded, none chosen
    (sy, sx), (ty, tx) = grid.scale_translate()
    m = viewer.layers["p(round) · slide"]
    assert m.data.shape == grid.map_hw
    np.testing.assert_allclose(m.scale, (0.5 * sy, 0.5 * sx))
    np.testing.assert_allclose(m.translate, (4 + 0.5 * ty, 6 + 0.5 * tx))


def test_explain_dock_on_a_multiscale_layer_places_the_map_over_level0(make_napari_viewer, session, qtbot):
    from napari_cellclass.widgets.explain import ExplainDock

    viewer = make_napari_viewer()
    dock = ExplainDock(viewer, session)
    viewer.window.add_dock_widget(dock, name="Explain")
    layer = viewer.add_image(pyramid(), multiscale=True, rgb=True, name="slide", scale=(0.5, 2.0), translate=(3.0, -4.0))
    dock.image.set_layer(layer)
    assert dock.run() is not None
    qtbot.waitUntil(lambda: not dock.controls.running, timeout=120_000)
    # map layers are fed in one per event-loop turn after the job ends (widgets/feeder.py)
    qtbot.waitUntil(lambda: any((lyr.name.startswith("Grad-CAM ") and lyr.name.endswith(" · slide")) for lyr in viewer.layers), timeout=30_000)
    cam = next(lyr for lyr in viewer.layers if (lyr.name.startswith("Grad-CAM ") and lyr.name.endswith(" · slide")))
    assert cam.data.shape == (32, 32)  # explained on the smallest level of at least the input size
    np.testing.assert_allclose(cam.scale, (0.5 * 8, 2.0 * 8))  # that level's pixels are 8 level-0 pixels
    # a map cell covers 8x8 level-0 pixels: its centre is 3.5 level-0 pixels in from their first
    np.testing.assert_allclose(cam.translate, (3.0 + 0.5 * 3.5, -4.0 + 2.0 * 3.5))
    # so the map's edges are level 0's edges: cell edge = centre - half a cell, pixel edge likewise
    scale, src_scale = np.asarray(cam.scale), np.asarray(layer.scale)
    np.testing.assert_allclose(np.asarray(cam.translate) - scale / 2, np.asarray(layer.translate) - src_scale / 2)
    np.testing.assert_allclose(np.asarray(cam.translate) + scale * 31.5, np.asarray(layer.translate) + src_scale * 255.5)
