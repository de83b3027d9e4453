"""The "level" row of the Classify and Explain docks for multiscale layers (run under xvfb-run)."""

from __future__ import annotations

import numpy as np
import pytest

# as napari would: the dock modules are imported before torch (see runner.guard_torch_import)
import napari_cellclass.widgets.runner  # noqa: F401
from napari_cellclass.app.level_choice import level_choices

CLASSES = ["round", "spread", "clumped"]


def levels(n=256):
    rng = np.random.default_rng(0)
    out = [rng.integers(0, 255, (n, n, 3), dtype=np.uint8)]
    while out[-1].shape[0] > 32:
        out.append(out[-1][::2, ::2])
    return out  # 256, 128, 64, 32


class FakeLayer:
    def __init__(self, data, scale=(1.0, 1.0, 1.0), units=("pixel",) * 3, multiscale=True):
        self.data, self.scale, self.units, self.multiscale, self.rgb, self.name = data, scale, units, multiscale, True, "slide"


def bundle(pixel_size=None):
    from napari_cellclass import build_model

    b = build_model("resnet18", classes=CLASSES, input_size=(32, 32))
    if pixel_size is not None:
        b.provenance["pixel_size"] = pixel_size
    return b


def test_auto_is_the_engines_choice_and_pixel_sizes_come_from_the_layer_scale():
    lay = FakeLayer(levels(), scale=(0.25, 0.25, 1.0), units=("micrometer", "micrometer", "pixel"))
    assert level_choices(FakeLayer(levels()[0], multiscale=False), None, "map") is None
    c = level_choices(lay, None, "map")
    assert c.auto is None and c.auto_text().startswith("auto (chosen when the model is loaded")
    assert [r.text() for r in c.rows][1] == "1: 128×128 px, pixel 0.5 micrometer"
    c = level_choices(lay, bundle(), "classify")
    assert c.auto == 3 and not c.override and c.level_for(1) is None  # whole-image runs take no override
    c = level_choices(lay, bundle(pixel_size=1.0), "map")  # trained at 1 µm: level 2 (4 x 0.25 µm)
    assert (c.auto, c.by_pixel_size) == (2, True) and "level 2, pixel 1 micrometer" in c.auto_text()
    assert c.level_for(None) == 2 and c.level_for(0) == 0
    plain = level_choices(FakeLayer(levels()), bundle(pixel_size=1.0), "map")  # a scale of 1 px says nothing
    assert plain.auto == 0 and plain.level_for(None) is None and plain.rows[0].pixel_size is None


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    from napari_cellclass import save_model

    return save_model(bundle(), tmp_path_factory.mktemp("models") / "tiny.safetensors")


@pytest.fixture
def session(model_file):
    from napari_cellclass.app.session import ModelChoice, Session

    s = Session()
    s.set_choice(ModelChoice("file", str(model_file)))
    s.load()
    return s


@pytest.mark.gui
def test_classify_dock_offers_the_levels_and_passes_the_choice(make_napari_viewer, session, qtbot):
    from napari_cellclass.core.inference.tiling import tile_grid
    from napari_cellclass.widgets.classify import TILED, ClassifyDock

    viewer = make_napari_viewer()
    dock = ClassifyDock(viewer, session)
    viewer.window.add_dock_widget(dock, name="Classify")
    flat = viewer.add_image(levels()[0], rgb=True, name="flat")
    dock.layers.set_selected([flat])
    assert dock.level.isHidden()
    layer = viewer.add_image(levels(), multiscale=True, rgb=True, name="slide", scale=(0.5, 0.5))
    dock.layers.set_selected([layer])
    assert not dock.level.isHidden() and not dock.level.isEnabled()  # whole image: shown, not choosable
    assert dock.level.combo.itemText(0).startswith("auto (level 3")
    dock.mode.setCurrentText(TILED)
    assert dock.level.isEnabled() and dock.level.combo.count() == 1 + 4
    dock.level.combo.setCurrentIndex(dock.level.combo.findData(1))
    dock.tile.setValue(32)
    dock.overlap.setValue(0.5)
    assert dock.run() is not None
    qtbot.waitUntil(lambda: not dock.controls.running, timeout=120_000)
    m = viewer.layers["p(round) · slide"]
    grid = tile_grid((128, 128), 32, 0.5)  # level 1, as chosen
    assert m.data.shape == grid.map_hw
    np.testing.assert_allclose(m.scale, (0.5 * 2 * grid.stride_hw[0], 0.5 * 2 * grid.stride_hw[1]))


@pytest.mark.gui
def test_explain_dock_passes_the_chosen_level_to_a_tiled_explanation(make_napari_viewer, session, qtbot):
    from napari_cellclass.widgets.explain import ExplainDock

    viewer = make_napari_viewer()
    dock = ExplainDock(viewer, session)
    viewer.window.add_dock_widget(dock, name="Explain")
    layer = viewer.add_image(levels(), multiscale=True, rgb=True, name="slide")
    dock.tiled.setChecked(False)
    dock.image.set_layer(layer)
    assert not dock.level.isHidden() and not dock.level.isEnabled()
    dock.tiled.setChecked(True)
    dock.tile.setValue(32)
    assert dock.level.isEnabled()
    dock.level.combo.setCurrentIndex(dock.level.combo.findData(2))
    assert dock.run() is not None
    qtbot.waitUntil(lambda: not dock.controls.running, timeout=120_000)
    qtbot.waitUntil(lambda: any((lyr.name.startswith("Grad-CAM ") and lyr.name.endswith(" · slide")) for lyr in viewer.layers), timeout=30_000)
    cam = next(lyr for lyr in viewer.layers if (lyr.name.startswith("Grad-CAM ") and lyr.name.endswith(" · slide")))
    from napari_cellclass import explain

    h, w = cam.data.shape
    assert (h, w) == explain(session.cached(), levels()[2], tile=32).maps.shape[-2:]  # level 2's tiled maps
    assert (h, w) != explain(session.cached(), levels()[0], tile=32).maps.shape[-2:]  # not level 0's
    # and they cover the source edge to edge
    np.testing.assert_allclose(cam.data_to_world((-0.5, -0.5)), (-0.5, -0.5))
    np.testing.assert_allclose(cam.data_to_world((h - 0.5, w - 0.5)), (255.5, 255.5))
