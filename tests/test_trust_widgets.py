"""Issue 17 in the Classify dock (run under xvfb-run): rows the model flags as out
of distribution are marked and the flag reaches the layer metadata.  The model is
built, not trained; its threshold is placed between the two layers' scores so
exactly one is flagged (that the flag fires on another modality at all is
tests/test_trust.py's job)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import napari_cellclass.widgets.runner  # noqa: F401  (dock modules before torch, as napari does)

pytestmark = pytest.mark.gui
CLASSES = ["dim", "bright"]


def _like(seed):
    return np.random.default_rng(seed).integers(60, 200, (32, 32)).astype(np.uint8)


def _other():
    img = np.full((32, 32), 5, np.uint8)
    img[10:16, 12:18] = 255  # one bright spot on an empty field
    return img


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    from napari_cellclass.core.inference.predict import network_inputs, predict_records
    from napari_cellclass.core.models import ood
    from napari_cellclass.core.models.modelfile import save_model
    from napari_cellclass.core.presets.factory import build_model

    torch.manual_seed(0)
    bundle = build_model("senescence_cnn", classes=CLASSES, input_size=(32, 32), pretrained=False, in_chans=1)
    bundle.network.eval()
    x = network_inputs(bundle, [_like(s)[None] for s in range(20)], [255.0] * 20, torch.device("cpu"))
    with torch.no_grad():
        _, pooled = ood.logits_and_pooled(bundle.network, x)
    f = pooled.numpy()
    bundle.ood = ood.fit_stats(f, np.arange(20) % 2, 2, f, fitted_on="20 test images")
    a, b = (r.ood_score for r in predict_records(bundle, [_like(99), _other()], device="cpu", channel_axis="none"))
    assert a != b
    bundle.ood.threshold = (a + b) / 2
    path = save_model(bundle, tmp_path_factory.mktemp("m") / "trust.safetensors")
    return path, ("other", "like") if b > a else ("like", "other")  # (flagged, passed)


def test_flagged_rows_are_marked_in_the_table_and_the_metadata(make_napari_viewer, qtbot, model_file):
    from napari_cellclass.app.session import ModelChoice, Session
    from napari_cellclass.widgets.classify import OOD_BRUSH, OOD_TIP, ClassifyDock

    path, (flagged, passed) = model_file
    session = Session()
    session.set_choice(ModelChoice("file", str(path)))
    viewer = make_napari_viewer()
    dock = ClassifyDock(viewer, session)
    viewer.window.add_dock_widget(dock, name="Classify")
    layers = {"like": viewer.add_image(_like(99), name="like"), "other": viewer.add_image(_other(), name="other")}
    dock.layers.set_selected(list(layers.values()))
    assert dock.run() is not None
    qtbot.waitUntil(lambda: not dock.controls.running, timeout=60_000)

    assert layers[flagged].metadata["cellclass"]["predictions"]["ood"] == [True]
    assert layers[passed].metadata["cellclass"]["predictions"]["ood"] == [False]
    cols = [dock.view.horizontalHeaderItem(c).text() for c in range(dock.view.columnCount())]
    assert cols[-3:] == ["ood_score", "ood", "model"]
    by_layer = {dock.view.item(r, 0).text(): r for r in range(dock.view.rowCount())}
    rf, rp = by_layer[flagged], by_layer[passed]
    assert dock.view.item(rf, cols.index("ood")).text() == "OOD" and dock.view.item(rp, cols.index("ood")).text() == "ok"
    assert dock.view.item(rf, 0).background().color().getRgb()[:3] == OOD_BRUSH
    assert "1 flagged out of distribution" in dock.controls.status.text()
    assert dock.view.item(rf, 2).toolTip() == OOD_TIP and dock.view.item(rp, 2).toolTip() != OOD_TIP
    if shots := os.environ.get("CELLCLASS_SHOTS"):  # a screenshot for the docs, on request only
        viewer.window._qt_window.resize(1366, 768)
        qtbot.wait(300)
        viewer.window._qt_window.grab().save(os.path.join(shots, "classify_ood.png"))
