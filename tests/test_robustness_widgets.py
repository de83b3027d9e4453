"""The bad-input matrix of issue 7 through the docks (run under xvfb-run).

The same cases as tests/test_robustness.py (tests/badinputs.py): each one either
classifies or ends in a napari notification that names the problem — never an
exception escaping into Qt, never a dock left busy.
"""

from __future__ import annotations

import numpy as np
import pytest

import napari_cellclass.widgets.runner  # noqa: F401  (as napari would: docks before torch)
from badinputs import _OK, IMAGE_CASES, MODEL_CASES

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    from napari_cellclass import build_model, save_model

    return save_model(build_model("resnet18", classes=["a", "b"], input_size=(32, 32)),
                      tmp_path_factory.mktemp("m") / "m.safetensors")


def _session(path):
    from napari_cellclass.widgets.session import ModelChoice, Session

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
