"""State that follows the session: stale tables go, saved models are listed (xvfb-run)."""

from __future__ import annotations

import numpy as np
import pytest

import napari_cellclass.widgets.runner  # noqa: F401  - as napari would: docks before torch

pytestmark = pytest.mark.gui

CLASSES = ["round", "spread"]


def _tiny():
    from napari_cellclass import build_model

    return build_model("scaffoldnet", classes=CLASSES, input_size=(32, 32))


def test_a_new_session_model_clears_the_old_models_table(make_napari_viewer, qtbot, tmp_path):
    from napari_cellclass import save_model
    from napari_cellclass.app.session import ModelChoice, Session
    from napari_cellclass.widgets.classify import ClassifyDock

    session = Session()
    session.set_choice(ModelChoice("file", str(save_model(_tiny(), tmp_path / "a.safetensors"))))
    viewer = make_napari_viewer()
    dock = ClassifyDock(viewer, session)
    viewer.add_image(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8), name="cells", rgb=True)
    dock.layers.set_selected([viewer.layers["cells"]])
    assert dock.run() is not None
    qtbot.waitUntil(lambda: not dock.controls.running, timeout=60_000)
    assert dock.table.rows and dock.export_button.isEnabled()
    session.set_fine_tuned(_tiny(), select=True)  # Keep in Fine-tune
    assert not dock.table.rows and dock.view.rowCount() == 0 and not dock.export_button.isEnabled()
    assert dock.run() is not None
    qtbot.waitUntil(lambda: not dock.controls.running, timeout=60_000)
    assert dock.table.rows
    session.set_fine_tuned(_tiny(), select=True)  # Keep again: the same choice, another model
    assert not dock.table.rows
    dock.deleteLater()


def test_save_in_fine_tune_lists_the_file_in_every_model_picker(make_napari_viewer, qtbot, tmp_path):
    from napari_cellclass.app.session import Session
    from napari_cellclass.widgets.annotate import AnnotateDock
    from napari_cellclass.widgets.explain import ExplainDock

    session = Session()
    viewer = make_napari_viewer()
    annotate = AnnotateDock(viewer, session)
    explain = ExplainDock(viewer, session)
    session.set_fine_tuned(_tiny(), select=True)
    written = annotate.finetune.save(tmp_path / "tuned.safetensors")
    assert written is not None
    labels = [explain.model.combo.itemText(i) for i in range(explain.model.combo.count())]
    assert "tuned.safetensors" in labels
    annotate.deleteLater()
    explain.deleteLater()
    qtbot.wait(50)


def test_first_explain_of_an_unloaded_fcn_model_uses_fcn_and_docks_follow_new_layers(make_napari_viewer, qtbot,
                                                                                      tmp_path):
    from napari_cellclass import build_model, save_model
    from napari_cellclass.app.session import ModelChoice, Session
    from napari_cellclass.widgets.explain import ExplainDock

    path = save_model(build_model("protein_fcn", classes=["nucleus", "ER"], in_chans=4, output="sigmoid",
                                  input_size=(64, 64)), tmp_path / "fcn.safetensors")
    session = Session()
    viewer = make_napari_viewer()
    dock = ExplainDock(viewer, session)
    first = viewer.add_image(np.zeros((4, 64, 80), np.float32), name="first")
    assert dock.image.layer() is first
    cells = viewer.add_image(np.random.default_rng(2).random((4, 64, 80)).astype(np.float32), name="cells")
    assert dock.image.layer() is cells  # the newly opened image, not the one explained before
    session.set_choice(ModelChoice("file", str(path)))  # chosen, not loaded: its kind is unknown
    assert session.cached() is None and dock.method.currentData() == "gradcam"
    assert dock.run() is not None
    qtbot.waitUntil(lambda: not dock.controls.running and dock.feeder is None, timeout=60_000)
    assert any(l.name.startswith("FCN ") and l.name.endswith(" · cells") for l in viewer.layers), [l.name for l in viewer.layers]
    assert dock.method.currentData() == "fcn"  # and the dock now says so
    dock.deleteLater()
    qtbot.wait(50)
