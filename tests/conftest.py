"""Shared fixtures: tiny models and images so the suite runs fast on 2 CPU cores."""

from __future__ import annotations

import os

import numpy as np
import pytest

# Tests never reach the network; make huggingface_hub fail fast if anything tries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def _few_threads():
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    yield


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def tiny_bundle():
    """A 3-class resnet18 at 32x32 input: real timm backbone, milliseconds per image."""
    from napari_cellclass import build_model

    return build_model("resnet18", classes=["a", "b", "c"], input_size=(32, 32))


@pytest.fixture
def tiny_model_file(tiny_bundle, tmp_path):
    from napari_cellclass import save_model

    return save_model(tiny_bundle, tmp_path / "tiny.safetensors")


# ----------------------------------------------------------------------- viewer tests
def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def pytest_collection_modifyitems(config, items):
    """GUI tests need a display (napari's vispy canvas fails with Qt's offscreen
    platform): without one they are skipped with the command that runs them."""
    if _has_display():
        return
    skip = pytest.mark.skip(reason="needs a display: run the suite under `xvfb-run -a python -m pytest`")
    for item in items:
        if "gui" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory, monkeypatch):
    """Dock settings go to a fresh folder per test, never the user's config dir."""
    monkeypatch.setenv("NAPARI_CELLCLASS_CONFIG_DIR", str(tmp_path_factory.mktemp("cellclass-config")))


@pytest.fixture
def annotate_dock(make_napari_viewer):
    """The Annotate and fine-tune dock in a fresh viewer, with a fresh session."""
    from napari_cellclass.app.session import Session
    from napari_cellclass.widgets.annotate import AnnotateDock

    viewer = make_napari_viewer()
    widget = AnnotateDock(viewer, Session())
    viewer.window.add_dock_widget(widget, name="Annotate")
    return widget
