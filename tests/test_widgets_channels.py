"""Multichannel images in the docks (issue 19 item 6), in a real napari viewer (xvfb-run):
the protein sample on "auto", messages that point at the channel picker, one channel
choice per ticked layer, layers combined as channels, samples opened as coloured channels."""

from __future__ import annotations

import numpy as np
import pytest

import napari_cellclass.widgets.runner  # noqa: F401  (as napari would, before torch)

pytestmark = pytest.mark.gui

CLASSES = ["round", "spread", "clumped"]


@pytest.fixture(scope="module")
def rgb_model(tmp_path_factory):
    from napari_cellclass import build_model, save_model

    return save_model(build_model("resnet18", classes=CLASSES, input_size=(32, 32)),
                      tmp_path_factory.mktemp("models") / "rgb.safetensors")


@pytest.fixture(scope="module")
def two_channel_model(tmp_path_factory):
    from napari_cellclass import build_model, save_model

    return save_model(build_model("resnet18", classes=CLASSES, input_size=(32, 32), in_chans=2),
                      tmp_path_factory.mktemp("models") / "two.safetensors")


def _dock(make_napari_viewer, model, kind="classify"):
    from napari_cellclass.app.session import ModelChoice, Session

    session = Session()
    session.set_choice(ModelChoice("file", str(model)))
    viewer = make_napari_viewer()
    if kind == "classify":
        from napari_cellclass.widgets.classify import ClassifyDock as Dock
    else:
        from napari_cellclass.widgets.explain import ExplainDock as Dock
    widget = Dock(viewer, session)
    viewer.window.add_dock_widget(widget, name=kind)
    return widget


def _wait(qtbot, dock):
    qtbot.waitUntil(lambda: not dock.controls.running and getattr(dock, "feeder", None) is None, timeout=120_000)


def notifications():
    from napari.utils.notifications import notification_manager

    return [str(n.message) for n in notification_manager.records]


def _protein_stack():
    """The protein sample as one (C, H, W) layer with its metadata, as a file reader gives it."""
    from napari_cellclass._sample_data import SAMPLE_DIR, _index
    from napari_cellclass.core.io.files import read_image

    entry = _index()["protein"]
    meta = {k: entry[k] for k in ("axes", "channel_names", "true_classes")}
    return read_image(SAMPLE_DIR / entry["file"]).data, {"cellclass_sample": meta}


def test_the_protein_sample_on_auto_is_read_as_its_four_named_channels(make_napari_viewer, rgb_model, qtbot):
    from napari_cellclass import load_model, predict

    dock = _dock(make_napari_viewer, rgb_model)
    data, meta = _protein_stack()
    layer = dock.viewer.add_image(data, name="protein", metadata=meta)
    dock.layers.set_selected([layer])
    seen = len(notifications())
    dock.run()  # the model, loaded now, takes the first 3 of the 4 named channels
    _wait(qtbot, dock)
    info = dock.channels.info.text()
    assert "ambiguous" not in info and "C=4" in info and "metadata" in info, info
    assert [b.text() for b in dock.channels.boxes] == ["protein", "nucleus", "microtubules", "ER"]
    assert "using protein, nucleus, microtubules" in info  # the model reads 3: the first 3, said so
    assert dock.channels.axis.currentData() == "auto"
    preds = layer.metadata["cellclass"]["predictions"]
    expected = predict(load_model(rgb_model), data[[0, 1, 2]], channel_axis=0)[0]
    np.testing.assert_allclose([preds[f"p_{c}"][0] for c in CLASSES], expected, atol=1e-4)
    assert not any("ambiguous" in m or "cannot tell" in m for m in notifications()[seen:])


def test_channel_messages_point_at_the_channel_picker_not_the_api(make_napari_viewer, rgb_model, qtbot):
    dock = _dock(make_napari_viewer, rgb_model)
    planes = dock.viewer.add_image(np.random.default_rng(3).random((5, 40, 40)).astype(np.float32), name="planes")
    dock.layers.set_selected([planes])
    dock.run()
    _wait(qtbot, dock)
    msg = next(m for m in notifications() if "planes" in m and "cannot tell" in m)
    assert "channel picker" in msg and "channel_axis=" not in msg and "API" not in msg, msg

    dock.channels.set_axis(0, channels=[0, 2])
    dock.run()
    _wait(qtbot, dock)
    msg = next(m for m in notifications() if "2 channel(s) chosen" in m)
    assert "tick 3 channel(s) in the channel picker" in msg and "channels=[" not in msg, msg


def test_each_ticked_layer_gets_its_own_channel_choice(make_napari_viewer, two_channel_model, qtbot):
    """A 2-channel, a 5-channel and a time+channel image ticked together: all classified,
    each with the channels chosen for it."""
    from napari_cellclass import load_model, predict

    dock = _dock(make_napari_viewer, two_channel_model)
    rng = np.random.default_rng(5)
    two = dock.viewer.add_image(rng.random((2, 40, 40)).astype(np.float32), name="two")
    five = dock.viewer.add_image(rng.random((5, 40, 40)).astype(np.float32), name="five")
    movie = dock.viewer.add_image(rng.random((3, 4, 40, 40)).astype(np.float32), name="movie")  # (T, C, H, W)
    dock.layers.set_selected([two, five, movie])
    assert dock.channels.which.count() == 3 and dock.channels._which_row.isVisibleTo(dock)
    dock.channels.set_axis(0, channels=[1, 3], layer=five)
    dock.channels.set_axis(1, channels=[0, 2], layer=movie)
    dock.run()
    _wait(qtbot, dock)
    bundle = load_model(two_channel_model)
    for layer, picked, n in ((two, two.data, 1), (five, five.data[[1, 3]], 1), (movie, movie.data[:, [0, 2]], 3)):
        preds = layer.metadata["cellclass"]["predictions"]
        assert preds["frame"] == list(range(n)), layer.name
        expected = predict(bundle, picked, channel_axis=0 if n == 1 else 1)
        got = np.array([[preds[f"p_{c}"][i] for c in CLASSES] for i in range(n)])
        np.testing.assert_allclose(got, expected, atol=1e-4, err_msg=layer.name)
    # the choice stays with its layer when the ticks change
    dock.layers.set_selected([movie])
    assert dock.channels.options_for(movie).channels == [0, 2]


def test_one_layer_per_channel_can_be_combined_into_one_input(make_napari_viewer, rgb_model, qtbot):
    from napari_cellclass import load_model, predict

    dock = _dock(make_napari_viewer, rgb_model)
    rng = np.random.default_rng(7)
    layers = [dock.viewer.add_image(rng.integers(0, 255, (48, 64), dtype=np.uint8), name=n) for n in ("H", "E", "DAB")]
    dock.layers.set_selected(layers)
    dock.combine.setChecked(True)
    assert [b.text() for b in dock.channels.boxes] == ["H", "E", "DAB"]
    dock.run()
    _wait(qtbot, dock)
    rows = dock.table.rows
    assert len(rows) == 1 and rows[0].layer == "H + E + DAB"
    expected = predict(load_model(rgb_model), np.stack([l.data for l in layers]), channel_axis=0)[0]
    np.testing.assert_allclose(rows[0].probs, expected, atol=1e-4)

    odd = dock.viewer.add_image(rng.random((40, 40)).astype(np.float32), name="odd")
    dock.layers.set_selected([*layers, odd])
    assert dock.run() is None
    assert any("must have one shape" in m and "'odd' (40, 40)" in m for m in notifications())


def test_multichannel_samples_open_as_coloured_channels_and_the_docks_use_them(make_napari_viewer, rgb_model, qtbot):
    from napari_cellclass import load_model, predict

    dock = _dock(make_napari_viewer, rgb_model)
    viewer = dock.viewer
    viewer.open_sample("napari-cellclass", "protein")
    names = [l.name for l in viewer.layers]
    assert names == ["protein", "nucleus", "microtubules", "ER"]
    assert [l.colormap.name for l in viewer.layers] == ["green", "blue", "red", "yellow"]
    assert all(l.data.shape == (256, 256) for l in viewer.layers)

    assert len(dock.layers.selected()) == 1  # the dock ticks one of the channel layers
    dock.combine.setChecked(True)  # which stands for its sample's four channel layers
    assert [b.text() for b in dock.channels.boxes] == ["protein", "nucleus", "microtubules", "ER"]
    dock.run()
    _wait(qtbot, dock)
    [row] = dock.table.rows
    assert row.layer == "protein localisation (synthetic)"
    data = np.stack([l.data for l in viewer.layers])
    expected = predict(load_model(rgb_model), data[:3], channel_axis=0)[0]
    np.testing.assert_allclose(row.probs, expected, atol=1e-4)

    explain = _dock(make_napari_viewer, rgb_model, kind="explain")
    explain.viewer.open_sample("napari-cellclass", "protein")
    explain.combine.setChecked(True)  # the sample's channel layers, found by their group
    assert [b.text() for b in explain.channels.boxes] == ["protein", "nucleus", "microtubules", "ER"]
    explain.run()
    _wait(qtbot, explain)
    maps = [l for l in explain.viewer.layers if "Grad-CAM" in l.name]
    assert maps and all(m.data.ndim == 2 for m in maps)  # on the channel layers' plane, no channel slider
    assert maps[0].name.startswith("Grad-CAM ") and maps[0].name.endswith(" · protein localisation (synthetic)")


def test_explain_combines_the_layers_selected_in_the_layer_list(make_napari_viewer, rgb_model, qtbot):
    dock = _dock(make_napari_viewer, rgb_model, kind="explain")
    viewer = dock.viewer
    rng = np.random.default_rng(9)
    layers = [viewer.add_image(rng.integers(0, 255, (48, 64), dtype=np.uint8), name=n) for n in ("H", "E", "DAB")]
    dock.image.set_layer(layers[0])
    dock.combine.setChecked(True)
    seen = len(notifications())
    assert dock.run() is None  # only one layer selected (the last added): said, not guessed
    assert any("needs at least two image layers" in m for m in notifications()[seen:])
    viewer.layers.selection.clear()
    viewer.layers.selection.update(layers)
    assert [b.text() for b in dock.channels.boxes] == ["H", "E", "DAB"]
    dock.run()
    _wait(qtbot, dock)
    cam = next(l for l in viewer.layers if l.name.startswith("Grad-CAM ") and l.name.endswith(" · H + E + DAB"))
    assert cam.data.shape == (48, 64) and cam.metadata["cellclass"]["source"] == "H + E + DAB"
