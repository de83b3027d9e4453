"""Object mode of the Classify dock in a real napari viewer (run under xvfb-run)."""

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
    from napari_cellclass.widgets.classify import ClassifyDock

    session = Session()
    session.set_choice(ModelChoice("file", str(model_file)))
    viewer = make_napari_viewer()
    widget = ClassifyDock(viewer, session)
    viewer.window.add_dock_widget(widget, name="Classify")
    return widget


def _sample(viewer):
    from napari_cellclass._sample_data import protein_objects

    (data, _, _), (lab, lab_kwargs, kind) = protein_objects()
    assert kind == "labels" and lab.shape == data.shape[1:]
    # the nucleus channel as a greyscale image, which the 3-channel test model reads as grey RGB
    image = viewer.add_image(data[1], name="nuclei", scale=(0.5, 0.5), translate=(10, 20))
    labels = viewer.add_labels(lab, **lab_kwargs, scale=(0.5, 0.5), translate=(10, 20))
    return image, labels


def test_sample_objects_features_colours_rows_and_csv(dock, qtbot, tmp_path, model_file):
    from napari_cellclass import explain_objects, load_model, predict_objects
    from napari_cellclass.viewer.object_layers import class_colors

    viewer = dock.viewer
    image, labels = _sample(viewer)
    assert dock.objects.labels.layer() is None  # a new Labels layer does not switch object mode on
    dock.objects.labels.set_layer(labels)
    assert dock.objects.active() and not dock.mode.isEnabled()
    dock.layers.set_selected([image])
    dock.objects.margin.setValue(3)
    assert dock.run() is not None
    qtbot.waitUntil(lambda: not dock.controls.running, timeout=120_000)

    expected = predict_objects(load_model(model_file), image.data, labels.data, margin=3, options=None)
    n = len(expected)
    assert n >= 5
    feats = labels.features
    assert len(feats) == n and list(feats["label"]) == list(expected.labels)
    np.testing.assert_allclose(feats[[f"p_{c}" for c in CLASSES]].to_numpy(), expected.probs, atol=1e-5)
    assert list(feats["ood"]) == [None] * n  # the test model has no OOD statistics: not measured, said so
    assert "no OOD statistics" in dock.controls.status.text()

    coloured = viewer.layers[labels.name + " · classes"]
    assert tuple(coloured.scale) == (0.5, 0.5) and tuple(coloured.translate) == (10, 20)
    for r in expected.rows:  # every pixel of every object carries its predicted class
        assert (coloured.data[labels.data == r.box.label] == CLASSES.index(r.predicted_class) + 1).all()
    assert (coloured.data[labels.data == 0] == 0).all()
    colors = class_colors(CLASSES)
    for k, c in enumerate(CLASSES):  # class k+1 is drawn in the legend's colour
        np.testing.assert_allclose(coloured.colormap.map(np.array([k + 1]))[0][:3],
                                   [int(colors[c][i:i + 2], 16) / 255 for i in (1, 3, 5)], atol=1e-2)
    # no blending with the source's random colours: the class layer sits under the source,
    # which draws only outlines
    assert viewer.layers.index(coloured) == viewer.layers.index(labels) - 1 and labels.contour >= 1
    assert dock.view.rowCount() == n and all(c in dock.objects.legend.text() for c in CLASSES)
    assert [dock.view.horizontalHeaderItem(c).text() for c in range(3)] == ["frame", "label", "predicted_class"]

    dock.view.sortItems(1)  # by label
    dock.view.cellClicked.emit(n - 1, 2)  # what a click on the row's cell does
    last = expected.rows[-1]
    assert labels.selected_label == last.box.label
    cy, cx = (np.asarray(last.box.centroid) * 0.5 + (10, 20))
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    np.testing.assert_allclose(camera.center[-2:], (cy, cx), atol=1e-6)

    path = dock.export_csv(tmp_path / "objects.csv")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == n and rows[0]["label"] == str(expected.rows[0].box.label)
    assert rows[0]["model"] == model_file.name and rows[0]["ood_score"] == "" and "p_round" in rows[0]

    assert dock.objects.explain() is not None
    qtbot.waitUntil(lambda: not dock.controls.running, timeout=120_000)
    heat = viewer.layers[labels.name + " · gradcam · objects"]
    np.testing.assert_allclose(heat.data, explain_objects(load_model(model_file), image.data, labels.data, margin=3),
                               atol=1e-5)
    assert tuple(heat.scale) == (0.5, 0.5) and tuple(heat.translate) == (10, 20)

    dock.objects.labels.set_layer(None)  # back to whole images: the image table and modes again
    assert dock.mode.isEnabled() and dock.view.rowCount() == 0


def test_object_mode_needs_the_image_on_its_grid(dock):
    viewer = dock.viewer
    viewer.add_image(np.zeros((40, 40), np.uint8), name="a")
    viewer.add_image(np.zeros((50, 50), np.uint8), name="b")
    labels = viewer.add_labels(np.ones((30, 30), np.int32))
    dock.objects.labels.set_layer(labels)
    dock.layers.set_selected(list(viewer.layers)[:2])
    assert dock.run() is None  # two ticked images, neither on the Labels layer's grid: a warning, no job
    assert dock.objects.export_csv("x.csv") is None


def test_class_image_is_painted_per_frame():
    from napari_cellclass.viewer.object_layers import paint_classes

    lab = np.zeros((2, 6, 6), np.int32)
    lab[:, 1:3, 1:3] = 4  # the same id in both frames: another cell each time
    lab[1, 4:, 4:] = 9
    out = paint_classes(lab, {(0, 4): 1, (1, 4): 3, (1, 9): 2})
    assert (out[0][lab[0] == 4] == 1).all() and (out[1][lab[1] == 4] == 3).all() and (out[1][lab[1] == 9] == 2).all()
    assert (out[lab == 0] == 0).all() and out.dtype == np.uint16
    assert not paint_classes(lab[0], {}).any()


def test_object_rows_show_and_export_ood(make_napari_viewer, qtbot, tmp_path, model_file):
    import dataclasses

    from napari_cellclass import load_model, predict_objects, save_model
    from napari_cellclass.app.session import ModelChoice, Session
    from napari_cellclass.core.models.ood import OodStats, PartStats, feature_dim
    from napari_cellclass.widgets.classify import ClassifyDock

    bundle = load_model(model_file)
    d = feature_dim(bundle.network)
    rng = np.random.default_rng(2)
    part = PartStats("pooled", rng.normal(size=(3, d)).astype(np.float32), np.eye(d, dtype=np.float32))
    probe = dataclasses.replace(bundle, ood=OodStats([part], 0.0))
    viewer = make_napari_viewer()
    image, labels = _sample(viewer)
    scores = [r.ood_score for r in predict_objects(probe, image.data, labels.data, margin=4).rows]
    probe.ood.threshold = float(np.median(scores))  # about half the objects flagged
    path = save_model(probe, tmp_path / "with_ood.safetensors")
    session = Session()
    session.set_choice(ModelChoice("file", str(path)))
    dock = ClassifyDock(viewer, session)
    viewer.window.add_dock_widget(dock, name="Classify")
    dock.objects.labels.set_layer(labels)
    dock.objects.margin.setValue(4)
    dock.layers.set_selected([image])
    dock.run()
    qtbot.waitUntil(lambda: not dock.controls.running, timeout=120_000)
    head = [dock.view.horizontalHeaderItem(c).text() for c in range(dock.view.columnCount())]
    col = head.index("ood")
    shown = [dock.view.item(r, col).text() for r in range(dock.view.rowCount())]
    flagged = [s > probe.ood.threshold for s in scores]
    assert shown == ["OOD" if f else "ok" for f in flagged] and 0 < sum(flagged) < len(flagged)
    assert "flagged out of distribution" in dock.controls.status.text()
    np.testing.assert_allclose(labels.features["ood_score"].astype(float), scores, rtol=1e-4)
    import csv

    with open(dock.export_csv(tmp_path / "o.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["ood"] for r in rows] == ["true" if f else "false" for f in flagged]
