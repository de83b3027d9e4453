"""Large map layers are written as multiscale layers, placed on the source as before."""

from __future__ import annotations

import numpy as np
import pytest

# as napari would: the dock modules are imported before torch (see runner.guard_torch_import)
import napari_cellclass.widgets.runner  # noqa: F401
from napari_cellclass.app import map_pyramid
from napari_cellclass.app.map_pyramid import block_mean, map_levels, multiscale_data


def test_block_means_cover_the_map_and_keep_its_mean():
    m = np.arange(5 * 7, dtype=np.float32).reshape(5, 7)
    b = block_mean(m)
    assert b.shape == (3, 4)
    assert b[0, 0] == pytest.approx(np.mean(m[:2, :2]))
    assert b[2, 3] == m[4, 6]  # the odd corner averages with itself
    flat = np.full((9, 9), 0.25, np.float32)
    np.testing.assert_allclose(block_mean(flat), 0.25)


def test_only_maps_over_4096_px_on_a_side_get_a_pyramid():
    assert len(map_levels(np.zeros((4096, 100)))) == 1
    levels = map_levels(np.zeros((4097, 30)))
    assert [lv.shape for lv in levels] == [(4097, 30), (2049, 15), (1025, 8), (513, 4), (257, 2)]
    assert map_pyramid.LARGE_SIDE == 4096


def test_the_levels_are_shaped_like_the_placed_map():
    m = np.random.default_rng(0).random((40, 30)).astype(np.float32)
    placed = np.broadcast_to(m.reshape(1, 40, 30, 1), (1, 40, 30, 3))  # a frame axis and a channel axis
    out = multiscale_data(placed, m, 1, 2, large=16, smallest=20)
    assert isinstance(out, list) and out[0] is placed
    assert [a.shape for a in out[1:]] == [(1, 20, 15, 3)]  # down to 20 px: one step
    assert multiscale_data(placed, m, 1, 2, large=64) is placed


@pytest.fixture
def small_threshold(monkeypatch):
    """Maps over 16 px on a side are multiscale, down to 8 px: the docks' tiny maps become pyramids."""
    monkeypatch.setattr(map_pyramid, "LARGE_SIDE", 16)
    monkeypatch.setattr(map_pyramid, "SMALLEST_SIDE", 8)


@pytest.mark.gui
def test_a_large_probability_map_layer_is_multiscale_and_lands_on_the_source(make_napari_viewer, small_threshold):
    from napari_cellclass.app.layer_data import SourceInfo, probability_map_layers
    from napari_cellclass.core.inference.levels import LevelGrid
    from napari_cellclass.core.inference.tiling import tile_grid
    from napari_cellclass.core.io.images import inspect
    from napari_cellclass.core.io.multiscale import Pyramid
    from napari_cellclass.viewer.layers import upsert_all

    viewer = make_napari_viewer()
    levels = [np.zeros((s, s, 3), np.uint8) for s in (1024, 512, 256)]
    src = viewer.add_image(levels, multiscale=True, rgb=True, name="slide", scale=(0.5, 0.25), translate=(7.0, -3.0))
    level = Pyramid.from_arrays(levels, rgb=True).levels[1]  # mapped on level 1
    grid = LevelGrid(tile_grid((512, 512), 16, 0.5), level)  # 64 x 64 cells: over the (patched) threshold
    layout, _ = inspect(levels[0], "auto", 3, True, "slide")
    info = SourceInfo("slide", levels[0].shape, True, tuple(src.scale), tuple(src.translate))
    probs = np.random.default_rng(1).random((2, 64, 64)).astype(np.float32)
    first = upsert_all(viewer, probability_map_layers(probs, grid, ["a", "b"], info, layout))[0]
    assert first.multiscale and [tuple(a.shape) for a in first.data] == [(64, 64), (32, 32), (16, 16), (8, 8)]
    np.testing.assert_allclose(first.data[1][3, 5], probs[0, 6:8, 10:12].mean(), rtol=1e-6)
    # cell (i, j) is one stride: level-1 pixels 8i..8i+7, i.e. level-0 pixels 16i..16i+15, centred on 16i+7.5
    for i, j in [(0, 0), (10, 40), (63, 63)]:
        np.testing.assert_allclose(first.data_to_world((i, j)), src.data_to_world((16 * i + 7.5, 16 * j + 7.5)))
    first.opacity = 0.3  # a user's choice survives a re-run, which replaces the layer
    again = upsert_all(viewer, probability_map_layers(probs, grid, ["a", "b"], info, layout))[0]
    assert again.multiscale and again.opacity == pytest.approx(0.3) and len(viewer.layers) == 3


@pytest.mark.gui
def test_the_explain_dock_writes_a_large_map_as_a_multiscale_layer_over_level0(make_napari_viewer, qtbot, small_threshold,
                                                                                tiny_model_file):
    from napari_cellclass.app.session import ModelChoice, Session
    from napari_cellclass.widgets.explain import ExplainDock

    session = Session()
    session.set_choice(ModelChoice("file", str(tiny_model_file)))
    viewer = make_napari_viewer()
    dock = ExplainDock(viewer, session)
    rng = np.random.default_rng(0)
    levels = [rng.integers(0, 255, (s, s, 3), dtype=np.uint8) for s in (128, 64, 32)]
    layer = viewer.add_image(levels, multiscale=True, rgb=True, name="slide", scale=(0.5, 2.0), translate=(3.0, -4.0))
    dock.image.set_layer(layer)
    assert dock.run() is not None
    qtbot.waitUntil(lambda: not dock.controls.running, timeout=120_000)
    qtbot.waitUntil(lambda: any((lyr.name.startswith("Grad-CAM ") and lyr.name.endswith(" · slide")) for lyr in viewer.layers), timeout=30_000)
    cam = next(lyr for lyr in viewer.layers if (lyr.name.startswith("Grad-CAM ") and lyr.name.endswith(" · slide")))
    assert cam.multiscale and [tuple(a.shape) for a in cam.data] == [(32, 32), (16, 16), (8, 8)]
    # the map's level 0 spans level 0 of the source, edge to edge, in world coordinates
    np.testing.assert_allclose(cam.data_to_world((-0.5, -0.5)), layer.data_to_world((-0.5, -0.5)))
    np.testing.assert_allclose(cam.data_to_world((31.5, 31.5)), layer.data_to_world((127.5, 127.5)))
