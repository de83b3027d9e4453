"""The bad-input matrix of issue 7 through the docks (run under xvfb-run).

The same cases as tests/test_robustness.py (tests/badinputs.py): each one either
classifies or ends in a napari notification that names the problem — never an
exception escaping into Qt, never a dock left busy.
"""

from __future__ import annotations

import numpy as np
import pytest

import napari_cellclass.widgets.runner  # noqa: F401  (as napari would: docks before torch)
from badinputs import _OK, FILE_CASES, IMAGE_CASES, MODEL_CASES, SAVE_FAILURES

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    from napari_cellclass import build_model, save_model

    return save_model(build_model("resnet18", classes=["a", "b"], input_size=(32, 32)),
                      tmp_path_factory.mktemp("m") / "m.safetensors")


def _session(path):
    from napari_cellclass.app.session import ModelChoice, Session

    s = Session()
    s.set_choice(ModelChoice("file", str(path)))
    return s


def _messages():
    from napari.utils.notifications import notification_manager

    return [str(n.message) for n in notification_manager.records]


def _classify(viewer, qtbot, session, layer):
    from napari_cellclass.widgets.classify import ClassifyDock

    dock = ClassifyDock(viewer, session)
    dock.layers.set_selected([layer])
    before = len(_messages())
    dock.run()
    qtbot.waitUntil(lambda: not dock.controls.running, timeout=120_000)
    return dock, _messages()[before:]


@pytest.mark.parametrize("case", list(IMAGE_CASES))
def test_classify_dock_bad_images(case, make_napari_viewer, qtbot, model_file):
    make, expected = IMAGE_CASES[case]
    viewer = make_napari_viewer()
    layer = viewer.add_image(make(), name="bad")
    dock, messages = _classify(viewer, qtbot, _session(model_file), layer)
    if expected == _OK:
        probs = np.asarray([r for r in layer.metadata["cellclass"]["predictions"]["confidence"]], float)
        assert np.isfinite(probs).all(), messages
    else:
        assert "cellclass" not in layer.metadata
        assert any(expected in m for m in messages), messages
    assert dock.controls.run_button.isEnabled()


@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_classify_dock_bad_model_files(case, make_napari_viewer, qtbot, model_file, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(model_file.read_bytes())
    MODEL_CASES[case](bad)
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.zeros((32, 32, 3), np.uint8), name="fine", rgb=True)
    dock, messages = _classify(viewer, qtbot, _session(bad), layer)
    assert "cellclass" not in layer.metadata
    assert any("bad.safetensors" in m for m in messages), messages
    assert dock.controls.run_button.isEnabled()


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_annotate_dock_folder_with_a_bad_file(case, make_napari_viewer, qtbot, tmp_path):
    """A folder holding one of the bad files opens; the bad file is left out or shown
    blank with a notification naming it; moving through every plane raises nothing;
    the good files can still be labelled."""
    from skimage.io import imsave

    from napari_cellclass.widgets.annotate import AnnotateDock
    from napari_cellclass.app.session import Session

    name, write, expected = FILE_CASES[case]
    folder = tmp_path / "plate"
    folder.mkdir()
    good = np.full((64, 64, 3), 77, np.uint8)
    for g in ("a_good.png", "z_good.png"):
        imsave(folder / g, good, check_contrast=False)
    write(folder / name)
    viewer = make_napari_viewer()
    dock = AnnotateDock(viewer, Session())
    viewer.window.add_dock_widget(dock, name="Annotate")
    before = len(_messages())
    layer = dock.open_folder(folder)
    assert layer is not None, _messages()[before:]
    for i in range(len(layer.data)):  # napari slices each plane; a failure must not escape
        viewer.dims.set_point(0, i)
    messages = _messages()[before:]
    if expected == _OK:
        assert len(layer.data) == 3 and not any(name in m for m in messages), messages
    else:
        assert any(name in m for m in messages), messages
    assert dock.add_class("x")
    plane = layer.data.index_of(folder / "z_good.png")
    viewer.layers.selection.active = layer
    viewer.dims.set_point(0, plane)
    _press(viewer, "1")  # the key a user types to label the plane on screen
    key = dock.store.find_image(path=folder / "z_good.png")
    assert key is not None and dock.store.image_labels(key, 0) == ("x",)
    np.testing.assert_array_equal(np.asarray(layer.data[plane])[:64, :64], good)


def _press(viewer, key: str) -> None:
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest
    from qtpy.QtWidgets import QApplication

    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    QTest.keyClick(canvas, getattr(Qt.Key, f"Key_{key}"))
    QApplication.processEvents()


@pytest.mark.parametrize("case", list(SAVE_FAILURES))
def test_finetune_save_onto_a_failing_folder(case, make_napari_viewer, qtbot, model_file, tmp_path, monkeypatch):
    """Fine-tune's Save… into a read-only folder or onto a full disk: a notification
    naming the file and the reason, no exception, the previous model intact, no
    temporary file, and the failed path not added to the recent models."""
    from napari_cellclass import build_model
    from napari_cellclass.widgets.finetune import FineTunePanel
    from napari_cellclass.app.session import Session

    install, reason = SAVE_FAILURES[case]
    session = Session()
    session.fine_tuned = build_model("resnet18", classes=["a", "b"], input_size=(32, 32))
    panel = FineTunePanel(make_napari_viewer(), session, lambda: None)
    folder = tmp_path / "models"
    folder.mkdir()
    target = folder / "tuned.safetensors"
    target.write_bytes(model_file.read_bytes())
    install(monkeypatch, folder)
    before = len(_messages())
    assert panel.save(target) is None
    messages = _messages()[before:]
    assert any(str(target) in m and reason in m for m in messages), messages
    assert target.read_bytes() == model_file.read_bytes()
    assert [p.name for p in folder.iterdir()] == ["tuned.safetensors"]
    assert str(target.resolve()) not in session.settings.recent_models()


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_classify_dock_on_a_folder_stack_with_a_bad_file(case, make_napari_viewer, qtbot, model_file, tmp_path):
    """The Classify dock on a folder opened with a bad file in it: it classifies the
    planes it can show, a file that cannot be read gets no prediction (its blank plane is
    not classified) and is named in a notification, the dock is free."""
    from skimage.io import imsave

    from napari_cellclass.widgets.annotate import AnnotateDock
    from napari_cellclass.app.session import Session

    name, write, expected = FILE_CASES[case]
    folder = tmp_path / "plate"
    folder.mkdir()
    for g in ("a_good.png", "z_good.png"):
        imsave(folder / g, np.full((32, 32, 3), 77, np.uint8), check_contrast=False)
    write(folder / name)
    viewer = make_napari_viewer()
    before = len(_messages())
    layer = AnnotateDock(viewer, Session()).open_folder(folder)
    dock, messages = _classify(viewer, qtbot, _session(model_file), layer)
    messages = _messages()[before:]
    preds = layer.metadata["cellclass"]["predictions"]
    conf = np.asarray(preds["confidence"], float)
    assert len(conf) >= 2 and np.isfinite(conf).all()  # at least the two good files
    # one row per readable plane: the good files, plus the bad one only where it reads
    assert len(conf) == (3 if expected == _OK else 2), preds
    assert (expected == _OK) != any(name in m for m in messages), messages
    assert dock.controls.run_button.isEnabled()
