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
