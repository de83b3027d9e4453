"""napari: how long the Explain dock blocks the Qt thread while its maps arrive.

A 10 ms QTimer heartbeat runs on the Qt thread from the moment Run is pressed until
the last map layer is in the viewer; the longest gap between ticks is the longest
time the viewer could not answer.  The run is "all classes" of a many-class model,
once plain and once "beside each channel" (grid view), on one multichannel layer.

    xvfb-run -a python -m benchmarks.bench_explain_layers [--classes 14] [--size 512] [--profile]

Prints one JSON line per case (max and median gap in ms, layers added, seconds).
``--profile`` adds the slowest main-thread functions (cProfile, cumulative) of the
feeding phase, to see what still blocks.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def _wait(dock, ticks: list[float]) -> tuple[float, float]:
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    poll = QTimer()
    poll.setInterval(5)
    poll.timeout.connect(lambda: None if (dock.controls.running or dock.feeder is not None) else loop.quit())
    t0 = time.perf_counter()
    poll.start()
    loop.exec()
    poll.stop()
    return t0, time.perf_counter()


def _floor(viewer) -> float:
    """The longest heartbeat gap while napari adds one bare 2x2 image layer, in the same
    viewer: what any single layer addition costs the Qt thread on this machine."""
    from qtpy.QtCore import QEventLoop, QTimer

    ticks: list[float] = []
    beat = QTimer()
    beat.setInterval(10)
    beat.timeout.connect(lambda: ticks.append(time.perf_counter()))
    loop = QEventLoop()
    beat.start()
    t0 = time.perf_counter()
    QTimer.singleShot(50, lambda: viewer.add_image(np.zeros((2, 2), np.float32), name="floor probe"))
    QTimer.singleShot(1500, loop.quit)
    loop.exec()
    beat.stop()
    viewer.layers.remove("floor probe")
    return float(np.diff([t0, *ticks]).max())


def measure(classes: int = 14, size: int = 512, grid: bool = False, profile: bool = False) -> dict:
    import napari
    from qtpy.QtCore import QTimer

    import napari_cellclass.widgets.runner  # noqa: F401  (before torch, as napari does)
    from napari_cellclass import build_model, save_model
    from napari_cellclass.app.session import ModelChoice, Session
    from napari_cellclass.app.settings import Settings
    from napari_cellclass.widgets.explain import ExplainDock

    with tempfile.TemporaryDirectory(prefix="cellclass-bench-") as tmp:
        names = [f"class {i}" for i in range(classes)]
        path = save_model(build_model("resnet18", classes=names, input_size=(64, 64)), Path(tmp) / "m.safetensors")
        session = Session(Settings(Path(tmp) / "settings.json"))
        session.set_choice(ModelChoice("file", str(path)))
        viewer = napari.Viewer()
        viewer.window._qt_window.resize(1366, 768)
        try:
            dock = ExplainDock(viewer, session)
            viewer.window.add_dock_widget(dock, name="Explain")
            data = np.random.default_rng(0).random((3, size, size)).astype(np.float32)
            layer = viewer.add_image(data, name="nlo", metadata={"channel_names": ["SRS", "TPEF", "trans"]})
            dock.image.set_layer(layer)
            dock.grid.setChecked(grid)
            dock.target.setCurrentText("all classes")
            before = len(viewer.layers)
            ticks: list[float] = []
            beat = QTimer()
            beat.setInterval(10)
            beat.timeout.connect(lambda: ticks.append(time.perf_counter()))
            prof = None
            if profile:
                import cProfile

                prof = cProfile.Profile()
                prof.enable()
            beat.start()
            dock.run()
            t0, t1 = _wait(dock, ticks)
            beat.stop()
            if prof is not None:
                prof.disable()
            stamps = [t0, *[t for t in ticks if t0 <= t <= t1], t1]
            during = np.diff(stamps)
            worst = np.argsort(during)[::-1][:5]  # where the longest gaps began, in s after Run
            out = {"case": f"all {classes} classes" + (", beside each channel" if grid else ""), "image": [3, size, size],
                   "max_gap_ms": round(1000 * float(during.max()), 1), "median_gap_ms": round(1000 * float(np.median(during)), 1),
                   "layers_added": len(viewer.layers) - before, "seconds": round(t1 - t0, 2),
                   "worst_gaps": [[round(stamps[i] - t0, 2), round(1000 * float(during[i]))] for i in sorted(worst)],
                   "status": dock.controls.status.text()[:160]}
            if prof is not None:
                import io
                import pstats

                s = io.StringIO()
                pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(25)
                out["profile"] = s.getvalue()
            out["napari_floor_one_layer_ms"] = round(1000 * _floor(viewer), 1)
            return out
        finally:
            viewer.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_explain_layers", description=__doc__)
    p.add_argument("--classes", type=int, default=14)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--only", choices=("plain", "grid"), default=None)
    args = p.parse_args(argv)
    for grid in (False, True):
        if args.only and args.only != ("grid" if grid else "plain"):
            continue
        res = measure(args.classes, args.size, grid, args.profile)
        prof = res.pop("profile", None)
        print(json.dumps(res), flush=True)
        if prof:
            print(prof)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
