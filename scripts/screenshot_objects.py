#!/usr/bin/env python
"""Render object mode for the docs (run under xvfb-run): the Classify dock classifying
the protein-objects sample's nuclei (``docs/objects_dock.png``) and the Annotate dock
with objects labelled by click and the next uncertain object selected
(``docs/annotate_objects.png``), both in a 1366x768 window.

    xvfb-run -a python scripts/screenshot_objects.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def wait(app, cond, timeout=600.0) -> None:
    t0 = time.time()
    while not cond():
        app.processEvents()
        time.sleep(0.02)
        if time.time() - t0 > timeout:
            raise TimeoutError


def _viewer(title: str):
    import napari

    viewer = napari.Viewer(title=title)
    viewer.window._qt_window.resize(1366, 768)
    return viewer


def _widen(viewer, dock_widget, width: int = 600) -> None:
    from qtpy.QtCore import Qt

    viewer.window._qt_window.resizeDocks([dock_widget], [width], Qt.Orientation.Horizontal)


def _sample(viewer):
    from napari_cellclass._sample_data import protein_objects

    (data, _, _), (lab, lab_kwargs, _) = protein_objects()
    image = viewer.add_image(data[1], name="nuclei")
    return image, viewer.add_labels(lab, **lab_kwargs)


def classify_shot(app, tmp: Path, out: Path) -> None:
    from napari_cellclass.app.session import Session
    from napari_cellclass.app.settings import Settings
    from napari_cellclass.widgets.classify import ClassifyDock

    viewer = _viewer("napari-cellclass: classify objects")
    dock = ClassifyDock(viewer, Session(Settings(tmp / "settings.json")))
    _widen(viewer, viewer.window.add_dock_widget(dock, name="Classify", area="right"))
    image, labels = _sample(viewer)
    dock.objects.labels.set_layer(labels)
    dock.layers.set_selected([image])
    dock.run()
    wait(app, lambda: not dock.controls.running)
    dock.objects.go_to_row(0)
    viewer.reset_view()
    app.processEvents()
    viewer.screenshot(str(out), canvas_only=False)
    viewer.close()


def annotate_shot(app, tmp: Path, out: Path) -> None:
    import numpy as np

    from napari_cellclass.app.session import Session
    from napari_cellclass.app.settings import Settings
    from napari_cellclass.widgets.annotate import AnnotateDock

    viewer = _viewer("napari-cellclass: annotate objects")
    dock = AnnotateDock(viewer, Session(Settings(tmp / "settings2.json")))
    _widen(viewer, viewer.window.add_dock_widget(dock, name="Annotate and fine-tune", area="right"))
    _image, labels = _sample(viewer)
    dock.open_annotations(tmp / "annotations.json")
    for c in ("nucleus", "cytoplasm"):
        dock.add_class(c)
    dock.objects.labels.set_layer(labels)
    viewer.layers.selection.active = labels
    ids = [i for i in np.unique(labels.data) if i][:4]
    for k, label in enumerate(ids):
        ys, xs = np.nonzero(labels.data == label)  # a pixel of the object (a nucleus may have holes)
        dock.classes.set_current(("nucleus", "cytoplasm")[k % 2])
        dock.objects.click((ys[len(ys) // 2], xs[len(xs) // 2]))
    dock.objects.rank()
    wait(app, lambda: not dock.objects.controls.running)
    viewer.reset_view()
    dock.objects.next()
    app.processEvents()
    viewer.screenshot(str(out), canvas_only=False)
    viewer.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "objects_dock.png")
    p.add_argument("--annotate-out", type=Path, default=ROOT / "docs" / "annotate_objects.png")
    args = p.parse_args(argv)

    import napari_cellclass.widgets.runner  # noqa: F401  (before torch, as in napari)

    tmp = Path(tempfile.mkdtemp(prefix="cellclass-shot-"))
    from napari.qt import get_qapp

    app = get_qapp()
    classify_shot(app, tmp, args.out)
    annotate_shot(app, tmp, args.annotate_out)
    print(args.out, args.annotate_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
