"""*Export for bioimage.io…* in the Fine-tune panel (run under xvfb-run)."""

from __future__ import annotations

import pytest

import napari_cellclass.widgets.runner  # noqa: F401  (as napari would: docks before torch)

pytestmark = pytest.mark.gui
pytest.importorskip("bioimageio.spec")


def test_export_button_writes_a_package_that_loads(make_napari_viewer, qtbot, tmp_path, tiny_bundle):
    from napari_cellclass.app.session import Session
    from napari_cellclass.core.models.modelfile import load_model
    from napari_cellclass.widgets.finetune import FineTunePanel

    viewer = make_napari_viewer()
    session = Session()
    panel = FineTunePanel(viewer, session, lambda: None)
    viewer.window.add_dock_widget(panel, name="Fine-tune")
    assert not panel.export_button.isEnabled()  # nothing fine-tuned yet
    session.set_fine_tuned(tiny_bundle, select=False)
    panel._update_buttons()
    assert panel.export_button.isEnabled()
    worker = panel.export_button.export(tmp_path / "ft.zip")
    qtbot.waitUntil(lambda: (tmp_path / "ft.zip").exists() and not worker.is_running, timeout=240_000)
    assert load_model(tmp_path / "ft.zip").classes == tiny_bundle.classes
    viewer.window._qt_window.resize(1366, 768)
    qtbot.wait(200)
    panel.grab().save(str(tmp_path.parent / "finetune_bioimageio.png"))


def _open_package(dock, monkeypatch, path) -> None:
    """The model picker's 'Open…' entry, with the file dialog answered."""
    from napari_cellclass.widgets import pickers

    monkeypatch.setattr(pickers.QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(path), "")))
    dock.model._activated(dock.model._choices.index(None))


def test_model_picker_opens_a_foreign_package_and_classifies(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    import numpy as np
    from test_bioimageio_foreign import CLASSES, timm_package

    from napari_cellclass.app.session import Session
    from napari_cellclass.core.models.bioimageio_import import package_test_tensors
    from napari_cellclass.widgets.classify import ClassifyDock

    viewer = make_napari_viewer()
    dock = ClassifyDock(viewer, Session())
    viewer.window.add_dock_widget(dock, name="Classify")
    rdf = timm_package(tmp_path / "pkg")
    _open_package(dock, monkeypatch, rdf)
    assert dock.session.choice.path == str(rdf)
    x, y = package_test_tensors(rdf)
    layer = viewer.add_image(x[0], name="cells")  # (2, 32, 32): channels first
    dock.layers.set_selected([layer])
    dock.channels.set_axis(0)
    dock.run()
    qtbot.waitUntil(lambda: not dock.controls.running and bool(dock.table.rows), timeout=120_000)
    assert dock.session.cached().classes == CLASSES
    want = np.exp(y[0] - y[0].max()) / np.exp(y[0] - y[0].max()).sum()  # the package's raw scores, softmaxed
    assert np.abs(np.asarray(dock.table.rows[0].probs) - want).max() <= 1e-4
    assert dock.table.rows[0].predicted_class == CLASSES[int(np.argmax(want))]
    assert dock.card_export.isEnabled()


def test_model_card_export_writes_a_package_that_loads(make_napari_viewer, qtbot, tmp_path, monkeypatch, tiny_model_file):
    from napari.utils.notifications import notification_manager

    from napari_cellclass.app.session import ModelChoice, Session
    from napari_cellclass.core.models.modelfile import load_model
    from napari_cellclass.widgets import bioimageio_button
    from napari_cellclass.widgets.classify import ClassifyDock

    viewer = make_napari_viewer()
    session = Session()
    session.set_choice(ModelChoice("file", str(tiny_model_file)))
    dock = ClassifyDock(viewer, session)
    viewer.window.add_dock_widget(dock, name="Classify")
    assert not dock.card_export.isEnabled()  # not loaded yet: nothing to export
    dock.show_card()
    qtbot.waitUntil(lambda: not dock.controls.running and dock.card_export.isEnabled(), timeout=60_000)
    out = tmp_path / "from-card.zip"
    monkeypatch.setattr(bioimageio_button.QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(out), "")))
    dock.card_export.click()
    worker = dock.card_export.worker
    qtbot.waitUntil(lambda: out.exists() and not worker.is_running, timeout=240_000)
    assert load_model(out).classes == load_model(tiny_model_file).classes
    assert any("bioimage.io package written" in str(n.message) for n in notification_manager.records)
    viewer.window._qt_window.resize(1366, 768)
    qtbot.wait(200)
    bar = dock.scroll_area.verticalScrollBar()  # the card sits at the bottom of the dock
    bar.setValue(bar.maximum())
    qtbot.wait(100)
    viewer.window._qt_window.grab().save(str(tmp_path.parent / "classify_card_bioimageio.png"))


def test_model_card_export_of_a_foreign_package_says_why_not(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from test_bioimageio_foreign import timm_package

    from napari_cellclass.app.session import ModelChoice, Session
    from napari_cellclass.widgets import bioimageio_button
    from napari_cellclass.widgets.classify import ClassifyDock

    errors = []
    monkeypatch.setattr(bioimageio_button, "notify_error", errors.append)
    rdf = timm_package(tmp_path / "pkg")
    session = Session()
    session.set_choice(ModelChoice("file", str(rdf)))
    viewer = make_napari_viewer()
    dock = ClassifyDock(viewer, session)
    dock.show_card()
    qtbot.waitUntil(lambda: not dock.controls.running and dock.card_export.isEnabled(), timeout=60_000)
    worker = dock.card_export.export(tmp_path / "again.zip")
    qtbot.waitUntil(lambda: not worker.is_running and bool(errors), timeout=60_000)
    assert "bioimage.io package from elsewhere" in str(errors[0]) and str(rdf) in str(errors[0])
    assert not (tmp_path / "again.zip").exists()


@pytest.mark.parametrize("torchscript_only", [False, True])
def test_explain_dock_on_a_foreign_package(make_napari_viewer, qtbot, tmp_path, torchscript_only):
    """State-dict weights of a timm model: a Grad-CAM layer; TorchScript only: a notification saying why not."""
    from napari.utils.notifications import notification_manager
    from test_bioimageio_foreign import timm_package

    from napari_cellclass.app.session import ModelChoice, Session
    from napari_cellclass.core.models.bioimageio_import import package_test_tensors
    from napari_cellclass.widgets.explain import ExplainDock

    arch = {"import_from": "torchvision.models", "callable": "resnet18"} if torchscript_only else None
    rdf = timm_package(tmp_path / "pkg", architecture=arch, torchscript=torchscript_only)
    session = Session()
    session.set_choice(ModelChoice("file", str(rdf)))
    session.load()
    viewer = make_napari_viewer()
    dock = ExplainDock(viewer, session)
    viewer.window.add_dock_widget(dock, name="Explain")
    dock.image.set_layer(viewer.add_image(package_test_tensors(rdf)[0][0], name="cells"))
    before = len(viewer.layers)
    assert dock.run() is not None
    qtbot.waitUntil(lambda: not dock.controls.running and dock.feeder is None, timeout=60_000)
    maps = [layer for layer in viewer.layers if layer.name.startswith("Grad-CAM ") and layer.name.endswith(" · cells")]
    if torchscript_only:
        assert len(viewer.layers) == before and not maps
        assert any("only TorchScript weights" in str(n.message) for n in notification_manager.records)
    else:
        assert maps and maps[0].data.shape[-2:] == (32, 32) and float(maps[0].data.max()) > 0
