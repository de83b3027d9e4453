"""`cellclass demo`: napari with a sample image, the built-in model, the Classify and
Explain docks, and a classification and a Grad-CAM already run.

Kept out of ``cli/`` because it imports Qt; ``cli/demo.py`` imports it lazily.  With
``screenshot`` the window is rendered to a PNG once both runs have finished, and the
viewer closes (on a machine without a screen, run it under ``xvfb-run -a``).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

WINDOW_SIZE = (1700, 1000)
SETTLE_MS = 1500  # let the canvas and docks repaint before the screenshot


def _check_display() -> None:
    from .core.errors import CellclassError

    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("QT_QPA_PLATFORM")
    ):
        raise CellclassError(
            "there is no display to open napari on",
            "run it under a virtual display: xvfb-run -a cellclass demo --screenshot demo.png",
        )


def _demo_image() -> list[tuple[Any, dict[str, Any], str]]:
    from . import _sample_data
    from .core.errors import CellclassError

    try:
        return _sample_data.cell_line()
    except (CellclassError, OSError, KeyError):  # sample files missing: the real skimage image
        return _sample_data.phase_contrast_cell()


def run_demo(screenshot: str | os.PathLike | None = None, timeout_s: float = 600.0) -> int:
    """Open the demo; with ``screenshot``, save the window to that PNG and return.

    Returns 0 when everything ran, 1 when a run failed or timed out (the reason is
    printed on stderr).
    """
    from .builtin import default_model_path

    default_model_path()  # a missing model file: one clear line before any window opens
    _check_display()

    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from .widgets.classify import ClassifyDock
    from .widgets.explain import ExplainDock
    from .app.session import ModelChoice, Session, session_for
    from .app.settings import Settings

    settings_dir = tempfile.TemporaryDirectory(prefix="cellclass-demo-")  # the user's settings stay untouched
    viewer = napari.Viewer(title="napari-cellclass demo")
    viewer.window.resize(*WINDOW_SIZE)
    layer = None
    for data, kwargs, _ in _demo_image():
        layer = viewer.add_image(data, **kwargs)
    session = session_for(viewer, Session(Settings(Path(settings_dir.name) / "settings.json")))
    session.set_choice(ModelChoice("default"))
    classify = ClassifyDock(viewer, session)
    explain = ExplainDock(viewer, session)
    viewer.window.add_dock_widget(classify, name="Classify", area="right")
    viewer.window.add_dock_widget(explain, name="Explain", area="right")
    classify.layers.set_selected([layer])
    explain.image.set_layer(layer)

    problems: list[str] = []
    done = {"finished": False}

    def failed(what: str) -> Any:
        return lambda err: problems.append(f"{what} failed: {err}")

    def finish() -> None:
        if done["finished"]:
            return
        done["finished"] = True
        if screenshot is not None:
            try:
                viewer.reset_view()  # the canvas changed size when the docks arrived
                QApplication.processEvents()
                Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                viewer.screenshot(str(screenshot), canvas_only=False, flash=False)
                print(f"cellclass demo: screenshot written to {screenshot}", file=sys.stderr)
            except Exception as err:  # noqa: BLE001 - reported, exit code 1
                problems.append(f"screenshot failed: {err}")
            viewer.close()
            QApplication.instance().quit()

    def explained() -> None:
        if screenshot is not None:
            QTimer.singleShot(SETTLE_MS, finish)

    def start_explain() -> None:
        worker = explain.run()
        if worker is None:
            problems.append("explain did not start")
            explained()
            return
        worker.errored.connect(failed("Grad-CAM"))
        worker.finished.connect(lambda: QTimer.singleShot(0, explained))

    def timed_out() -> None:
        problems.append(f"the demo did not finish within {timeout_s:.0f} s")
        finish()

    worker = classify.run()
    if worker is None:
        problems.append("classification did not start")
        start_explain()
    else:
        worker.errored.connect(failed("classification"))
        worker.finished.connect(lambda: QTimer.singleShot(0, start_explain))
    if screenshot is not None:
        QTimer.singleShot(int(timeout_s * 1000), timed_out)
    napari.run()
    settings_dir.cleanup()
    for p in problems:
        print(f"cellclass demo: {p}", file=sys.stderr)
    if screenshot is not None and not Path(screenshot).is_file():
        return 1
    return 1 if problems else 0
