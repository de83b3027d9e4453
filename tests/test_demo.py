"""`cellclass demo --screenshot`: the README's main-job command, end to end (under Xvfb)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = [pytest.mark.gui, pytest.mark.slow]



def test_demo_screenshot_shows_the_viewer_with_both_docks(tmp_path):
    from skimage.io import imread

    from napari_cellclass.builtin import default_model_path
    from napari_cellclass.demo import WINDOW_SIZE

    default_model_path()  # the built-in model must ship with the package
    png = tmp_path / "demo.png"
    env = {**os.environ, "NAPARI_CELLCLASS_CONFIG_DIR": str(tmp_path / "cfg"), "NAPARI_CONFIG": str(tmp_path / "napari.yaml")}
    proc = subprocess.run(
        [sys.executable, "-m", "napari_cellclass.cli", "demo", "--screenshot", str(png), "--timeout", "240"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "screenshot written" in proc.stderr
    img = imread(png)[..., :3].astype(np.float32)
    h, w = img.shape[:2]
    assert w >= WINDOW_SIZE[0] * 0.9 and h >= WINDOW_SIZE[1] * 0.9  # the whole window, not the canvas alone
    assert img.std() > 10, "the screenshot is blank"
    # the docks: the right third of the window holds widgets with text (many distinct colours)
    right = img[: int(h * 0.9), int(w * 0.7):].reshape(-1, 3)
    assert len(np.unique(right.astype(np.uint8), axis=0)) > 50
    # the canvas in the middle shows the image under the map (not napari's empty background)
    middle = img[int(h * 0.3): int(h * 0.7), int(w * 0.3): int(w * 0.5)]
    assert middle.std() > 5
