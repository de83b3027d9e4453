#!/usr/bin/env python
"""Render the annotate-and-fine-tune panel for the README (run under xvfb-run).

Labels synthetic phase-contrast frames with keys, draws two regions, fine-tunes the
built-in model for a few epochs and saves the viewer window (Fine-tune tab, curves
drawn) to ``docs/finetune.png`` and the Annotate tab to ``docs/annotate.png``.

    xvfb-run -a python scripts/screenshot_finetune.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

CLASSES = ["COLO-704", "EFO-21"]


def wait(app, cond, timeout=600.0) -> None:
    t0 = time.time()
    while not cond():
        app.processEvents()
        time.sleep(0.02)
        if time.time() - t0 > timeout:
            raise TimeoutError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "finetune.png")
    p.add_argument("--annotate-out", type=Path, default=ROOT / "docs" / "annotate.png")
    p.add_argument("--epochs", type=int, default=6)
    args = p.parse_args(argv)

    import napari
    import numpy as np
    from qtpy.QtWidgets import QApplication

    import napari_cellclass.widgets.runner  # noqa: F401  (before torch, as in napari)
    from napari_cellclass.core.synth import generate
    from napari_cellclass.widgets.annotate import AnnotateDock
    from napari_cellclass.app.session import Session
    from napari_cellclass.app.settings import Settings

    tmp = Path(tempfile.mkdtemp(prefix="cellclass-shot-"))
    viewer = napari.Viewer(title="napari-cellclass: annotate and fine-tune")
    viewer.window.resize(1500, 1000)
    dock = AnnotateDock(viewer, Session(Settings(tmp / "settings.json")))
    viewer.window.add_dock_widget(dock, name="Annotate and fine-tune", area="right")
    app = QApplication.instance()
    s = generate("cell-line", 32, seed=3, size=(64, 64), classes=CLASSES)
    images, labels = np.stack(s.images), [lab[0] for lab in s.labels]
    movie = viewer.add_image(images[:28], name="plate", rgb=True)
    dock.open_annotations(tmp / "annotations.json")
    for c in CLASSES:
        dock.add_class(c)
    dock.controller.advance = True
    viewer.layers.selection.active = movie
    viewer.dims.set_point(0, 0)
    for t in range(24):
        dock.controller.key(labels[t] + 1, movie)
    shapes = dock.add_layer("regions")
    dock.classes.set_current(CLASSES[labels[24]])
    viewer.dims.set_point(0, 24)
    shapes.add_rectangles(np.array([[24.0, 2.0, 2.0], [24.0, 2.0, 45.0], [24.0, 45.0, 45.0], [24.0, 45.0, 2.0]]))
    wait(app, lambda: len(dock.store.items) == 25)
    viewer.layers.selection.active = movie
    viewer.reset_view()
    app.processEvents()
    dock.grab()  # lay out once
    args.annotate_out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(args.annotate_out), canvas_only=False)

    panel = dock.finetune
    dock.tabs.setCurrentWidget(panel)
    panel.epochs.setValue(args.epochs)
    panel.lr.setValue(3e-3)
    panel.freeze.setValue(0.9)
    panel.batch.setValue(8)
    panel.run()
    wait(app, lambda: not panel.controls.running)
    app.processEvents()
    viewer.screenshot(str(args.out), canvas_only=False)
    print(f"wrote {args.out} and {args.annotate_out}; {panel.result.text()}")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
