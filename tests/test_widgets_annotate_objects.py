"""Annotate segmented objects by clicking them in the Annotate dock (run under xvfb-run):
the file records them with their label image, export writes their crops, training reads
them, and 'what to label next' steps through the objects."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from test_widgets_annotate import press

import napari_cellclass.widgets.runner  # noqa: F401  (as napari would: docks before torch)

pytestmark = pytest.mark.gui


def _scene():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 40, (64, 64)).astype(np.uint8)
    lab = np.zeros((64, 64), np.int32)
    for i in range(8):  # 8 objects: even ones dim, odd ones bright
        r, c = divmod(i, 4)
        lab[4 + 30 * r:20 + 30 * r, 2 + 16 * c:13 + 16 * c] = i + 1
        img[lab == i + 1] = 200 if i % 2 else 60
    return img, lab


@pytest.fixture
def dock(make_napari_viewer, tmp_path):
    from napari_cellclass.app.session import Session
    from napari_cellclass.widgets.annotate import AnnotateDock

    viewer = make_napari_viewer()
    widget = AnnotateDock(viewer, Session())
    viewer.window.add_dock_widget(widget, name="Annotate")
    widget.open_annotations(tmp_path / "ann.json")
    widget.add_class("dim"), widget.add_class("bright")
    return widget


def _click(clicks, viewer, world, drag=False):
    """What napari does with a mouse press, (moves,) release on the canvas."""
    event = SimpleNamespace(position=tuple(world), type="mouse_press")
    gen = clicks._mouse(viewer, event)
    if gen is None:
        return
    next(gen)
    if drag:
        event.type = "mouse_move"
        next(gen)
    event.type = "mouse_release"
    with pytest.raises(StopIteration):
        next(gen)


def test_click_two_objects_export_train_and_step_through(dock, qtbot, tmp_path):
    from napari_cellclass import build_model, load_dataset, save_model
    from napari_cellclass.app.session import ModelChoice
    from napari_cellclass.cli import main
    from napari_cellclass.core.annotations.objects import labelled_objects

    viewer = dock.viewer
    img, lab = _scene()
    viewer.add_image(img, name="cells", scale=(2, 2))
    labels = viewer.add_labels(lab, name="cells seg", scale=(2, 2))
    assert dock.objects.labels.layer() is None
    dock.objects.labels.set_layer(labels)
    dock.objects.margin.setValue(2)
    viewer.layers.selection.active = labels
    dock.classes.set_current("dim")
    clicks = dock.objects.clicks
    _click(clicks, viewer, (2 * 10.2, 2 * 5.0))  # object 1 (world = 2 x data)
    _click(clicks, viewer, (2 * 12.0, 2 * 22.0), drag=True)  # a drag pans: no label
    assert [it.obj.label for it in dock.store.items] == [1]
    _click(clicks, viewer, (2 * 12.0, 2 * 22.0))  # object 2, then key 2 makes it 'bright'
    press(viewer, "2")
    qtbot.waitUntil(lambda: dock.store.items[-1].label == "bright")
    _click(clicks, viewer, (0.0, 0.0))  # background: nothing
    assert "no object" in dock.objects.info.text()
    shown = viewer.layers["cells seg · annotated"]  # the labelled objects in their class colours, under the source
    qtbot.waitUntil(lambda: (shown.data[lab == 2] == 2).all())
    assert (shown.data[lab == 1] == 1).all() and (shown.data[(lab == 0) | (lab > 2)] == 0).all()
    assert viewer.layers.index(shown) == viewer.layers.index(labels) - 1 and labels.contour >= 1
    assert dock.objects.labels.layer() is labels  # the view layers are not offered as objects

    doc = json.loads(dock.store.path.read_text())
    objs = [(it["labels"], it["object"]["label"], it["object"]["labels"]["name"]) for it in doc["items"]]
    assert objs == [(["dim"], 1, "cells seg"), (["bright"], 2, "cells seg")]
    assert all(it["object"]["labels"]["hash"].startswith("blake2b:") and it["object"]["margin"] == 2 for it in doc["items"])

    report = dock.export(tmp_path / "export")
    assert report.n_samples == 2 and report.counts == {"dim": 1, "bright": 1}
    assert len(load_dataset(tmp_path / "export")) == 2
    out = tmp_path / "tuned.safetensors"  # fine-tune (train) on the object crops, tiny and from scratch
    assert main(["train", str(tmp_path / "export"), "--arch", "scaffoldnet", "--no-pretrained", "--epochs", "1",
                 "--input-size", "32", "--batch-size", "2", "--val-fraction", "0", "--test-fraction", "0",
                 "--device", "cpu", "--no-progress", "--out", str(out)]) == 0

    model = save_model(build_model("resnet18", classes=["dim", "bright"], input_size=(32, 32)), tmp_path / "m.safetensors")
    dock.session.set_choice(ModelChoice("file", str(model)))
    assert dock.objects.rank() is not None
    qtbot.waitUntil(lambda: not dock.objects.controls.running, timeout=120_000)
    left = dock.objects.remaining()
    assert len(left) == 6 and {(0, 1), (0, 2)}.isdisjoint(r[:2] for r in left)  # the labelled two are not offered
    scores = [s for _, _, s in left]
    assert scores == sorted(scores, reverse=True)
    frame, label, _ = dock.objects.next()
    assert (frame, label) == left[0][:2] and labels.selected_label == label
    box = viewer.layers["cells seg next to label"].data[0]  # outlined, in the layer's data coordinates
    ys, xs = np.nonzero(lab == label)
    np.testing.assert_allclose(box.min(0), (ys.min() - 0.5, xs.min() - 0.5))
    ys, xs = np.nonzero(lab == label)
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    np.testing.assert_allclose(camera.center[-2:], (2 * ys.mean(), 2 * xs.mean()), atol=1e-6)
    assert dock.objects.next()[:2] == left[1][:2]  # the next one along
    assert set(labelled_objects(dock.store, clicks.source())) == {(0, 1), (0, 2)}
    dock.undo()  # key 2 undone: object 2 is 'dim' again, in the file and in the view
    assert labelled_objects(dock.store, clicks.source())[(0, 2)].label == "dim"
    qtbot.waitUntil(lambda: (shown.data[lab == 2] == 1).all())

    # fine-tune in the dock on the object crops: label every object by click, 1 tiny epoch
    for label in range(3, 9):
        ys, xs = np.nonzero(lab == label)
        dock.classes.set_current("bright" if label % 2 == 0 else "dim")
        _click(clicks, viewer, (2 * ys.mean(), 2 * xs.mean()))
    assert len(dock.store.items) == 8 and all(it.obj is not None for it in dock.store.items)
    panel = dock.finetune
    panel.epochs.setValue(1)
    panel.batch.setValue(4)
    panel.val.setValue(0.25)
    panel.size.setValue(32)
    assert panel.start.choice().kind == "model"
    assert panel.run() is not None
    qtbot.waitUntil(lambda: not panel.controls.running, timeout=240_000)
    outcome = panel.outcome
    assert outcome is not None and not outcome.cancelled
    assert outcome.n_train + outcome.n_val == 8 and outcome.bundle.classes == ["dim", "bright"]


def test_switching_objects_off_gives_the_layer_its_keys_back(dock):
    labels = dock.viewer.add_labels(np.zeros((8, 8), np.int32), name="seg")
    dock.objects.labels.set_layer(labels)
    assert len(labels.keymap) == 9
    dock.objects.labels.set_layer(None)
    assert len(labels.keymap) == 0 and dock.objects.clicks.layer is None
    assert dock.objects.rank() is None  # nothing to rank: a message, no job


def test_reopened_file_finds_its_objects_on_an_unsaved_labels_layer(dock, make_napari_viewer):
    """Reloading resolves object annotations by the label image's pixels when it has no file."""
    from napari_cellclass.widgets.annotate import AnnotateDock

    img, lab = _scene()
    dock.viewer.add_image(img, name="cells")
    first = dock.viewer.add_labels(lab, name="seg")
    dock.objects.labels.set_layer(first)
    dock.viewer.layers.selection.active = first
    dock.classes.set_current("bright")
    assert dock.objects.click((40.0, 38.0)).obj.label == 7
    path = dock.store.path

    viewer = make_napari_viewer()  # another session: the same image, the segmentation under another name
    again = AnnotateDock(viewer, dock.session)
    viewer.window.add_dock_widget(again, name="Annotate")
    again.open_annotations(path)
    viewer.add_image(img, name="cells")
    labels = viewer.add_labels(lab.copy(), name="segmentation (reloaded)")
    again.objects.labels.set_layer(labels)
    shown = viewer.layers["segmentation (reloaded) · annotated"]
    assert (shown.data[lab == 7] == 2).all() and (shown.data[lab != 7] == 0).all()
    assert again.objects.labelled() == {(0, 7)}


def test_one_label_image_for_a_stack_labels_the_frame_on_screen(dock):
    img, lab = _scene()
    viewer = dock.viewer
    viewer.add_image(np.stack([img, img, img]), name="movie")
    labels = viewer.add_labels(lab, name="seg")
    dock.objects.labels.set_layer(labels)
    viewer.layers.selection.active = labels
    viewer.dims.set_point(0, 2)
    dock.classes.set_current("dim")
    item = dock.objects.click((2.0, 40.0, 38.0))
    assert item is not None and item.frame == 2 and item.obj.label == 7
