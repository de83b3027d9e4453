"""Classify objects of a Labels layer in a real napari viewer (run under xvfb-run)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

import napari_cellclass.widgets.runner  # noqa: F401  (as napari would: docks before torch)

pytestmark = pytest.mark.gui

CLASSES = ["round", "spread", "clumped"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    from napari_cellclass import build_model, save_model

    return save_model(build_model("resnet18", classes=CLASSES, input_size=(32, 32)),
                      tmp_path_factory.mktemp("models") / "tiny.safetensors")


@pytest.fixture
def dock(make_napari_viewer, model_file):
    from napari_cellclass.app.session import ModelChoice, Session
    from napari_cellclass.widgets.classify_objects import ClassifyObjectsDock

    session = Session()
    session.set_choice(ModelChoice("file", str(model_file)))
    viewer = make_napari_viewer()
    widget = ClassifyObjectsDock(viewer, session)
    viewer.window.add_dock_widget(widget, name="Classify objects")
    return widget


def test_sample_objects_features_colours_rows_and_csv(dock, qtbot, tmp_path, model_file):
    from napari_cellclass import load_model, predict_objects
    from napari_cellclass._sample_data import protein_objects

    viewer = dock.viewer
    (data, _, _), (lab, lab_kwargs, kind) = protein_objects()
    assert kind == "labels" and lab.shape == data.shape[1:]
    # the nucleus channel as a greyscale image, which the 3-channel test model reads as grey RGB
    image = viewer.add_image(data[1], name="nuclei", scale=(0.5, 0.5), translate=(10, 20))
    labels = viewer.add_labels(lab, **lab_kwargs, scale=(0.5, 0.5), translate=(10, 20))
    assert dock.image.layer() is image and dock.labels.layer() is labels
    dock.margin.setValue(3)
    assert dock.run() is not None
    qtbot.waitUntil(lambda: not dock.controls.running, timeout=120_000)

    expected = predict_objects(load_model(model_file), image.data, labels.data, margin=3, options=None)
    n = len(expected)
    assert n >= 5
    feats = labels.features
    assert len(feats) == n and list(feats["label"]) == list(expected.labels)
    np.testing.assert_allclose(feats[[f"p_{c}" for c in CLASSES]].to_numpy(), expected.probs, atol=1e-5)
    coloured = viewer.layers[labels.name + " · classes"]
    assert tuple(coloured.scale) == (0.5, 0.5) and tuple(coloured.translate) == (10, 20)
    first = expected.rows[0]
    for r in expected.rows:  # every pixel of every object carries its predicted class
        assert (coloured.data[labels.data == r.box.label] == CLASSES.index(r.predicted_class) + 1).all()
    assert (coloured.data[labels.data == 0] == 0).all()
    assert dock.view.rowCount() == n and "round" in dock.legend.text()

    dock.view.sortItems(1)  # by label
    dock.go_to_row(n - 1)
    last = expected.rows[-1]
    assert labels.selected_label == last.box.label
    cy, cx = (np.asarray(last.box.centroid) * 0.5 + (10, 20))
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    np.testing.assert_allclose(camera.center[-2:], (cy, cx), atol=1e-6)

    path = dock.export_csv(tmp_path / "objects.csv")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == n and rows[0]["label"] == str(first.box.label) and rows[0]["model"] == model_file.name

    from napari_cellclass import explain_objects

    assert dock.explain() is not None
    qtbot.waitUntil(lambda: not dock.controls.running, timeout=120_000)
    heat = viewer.layers[labels.name + " · gradcam · objects"]
    np.testing.assert_allclose(heat.data, explain_objects(load_model(model_file), image.data, labels.data, margin=3),
                               atol=1e-5)
    assert tuple(heat.scale) == (0.5, 0.5) and tuple(heat.translate) == (10, 20)


def test_no_labels_layer_warns(dock):
    dock.viewer.add_image(np.zeros((40, 40), np.uint8))
    assert dock.run() is None
