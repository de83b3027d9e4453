"""Live mode's label-to-updated-prediction latency and the UI heartbeat, in a real napari
viewer (run under ``xvfb-run -a``): the built-in model, an open stack of ``benchmarks.indep_data``
textures, N labelled frames; live mode on; then one more frame labelled, and the time from
that label until the open stack shows the live model's predictions (debounce included).
A 10 ms Qt timer measures the longest gap of the UI thread meanwhile.

``xvfb-run -a python -m benchmarks.bench_live_mode [--labels 20,100] [--size 160] [--out DIR]``
"""

from __future__ import annotations

import argparse
import cProfile
import faulthandler
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import indep_data


def _wait(app, cond, timeout: float = 900.0) -> None:
    t0 = time.perf_counter()
    while not cond():
        app.processEvents()
        time.sleep(0.005)
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError("live mode did not finish")


def _one(n_per_class: int, size: int, root: Path, profile: str | None = None) -> dict:
    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    import napari_cellclass.widgets.runner  # noqa: F401  (docks before torch, as napari does)
    from napari_cellclass.app.session import Session
    from napari_cellclass.widgets.annotate import AnnotateDock

    images, labels, classes = indep_data.make("u12-texture", 2 * n_per_class + 10, size, seed=11)
    grey = np.stack([(255 * (im - im.min()) / max(1, np.ptp(im))).astype(np.uint8) for im in images])
    stack = np.repeat(grey[..., None], 3, axis=-1)  # (T, H, W, 3) RGB frames: the layer's layout is unambiguous
    viewer = napari.Viewer(show=False)
    app = QApplication.instance()
    viewer.add_image(stack, name="stack", rgb=True)
    dock = AnnotateDock(viewer, Session())
    dock.open_annotations(root / f"ann{n_per_class}.json")
    for c in classes:
        dock.add_class(c)
    store = dock.store
    key = store.add_image(stack, name="stack", channel_axis=-1, rgb=True)
    for t in range(2 * n_per_class):
        store.label_image(key, t, classes[labels[t]])
    live = dock.live
    live.toggle.setChecked(True)
    _wait(app, lambda: live.retrains == 1 and not live.busy and not dock.finetune.controls.running)
    first = live.latencies[-1] if live.latencies else None
    gaps: list[float] = []
    last = [time.perf_counter()]

    stamps: list[float] = []

    trace = open(f"{profile}.stalls", "w") if profile else None  # noqa: SIM115 (closed below)

    def beat() -> None:
        if trace is not None:  # a C watchdog (needs no GIL): every thread's stack when the UI stalls > 100 ms
            faulthandler.dump_traceback_later(0.1, repeat=True, file=trace)
        now = time.perf_counter()
        gaps.append(now - last[0])
        stamps.append(now)
        last[0] = now

    collections: list[tuple[int, float]] = []  # (generation, ms) of every garbage collection meanwhile
    started: dict[str, float] = {}

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            started["t"] = time.perf_counter()
        elif "t" in started:
            collections.append((int(info["generation"]), 1000 * (time.perf_counter() - started.pop("t"))))

    gc.callbacks.append(on_gc)
    timer = QTimer()
    timer.timeout.connect(beat)
    timer.start(10)
    t = 2 * n_per_class
    prof = cProfile.Profile() if profile else None
    if prof is not None:
        prof.enable()  # the UI thread only: what it does between the label and the updated predictions
    t0 = time.perf_counter()
    store.label_image(key, t, classes[labels[t]])  # one more label
    _wait(app, lambda: live.retrains == 2 and not live.busy and not dock.finetune.controls.running
          and len(live.latencies) >= 2)
    if prof is not None:
        prof.disable()
        prof.dump_stats(profile)
    timer.stop()
    gc.callbacks.remove(on_gc)
    if trace is not None:
        faulthandler.cancel_dump_traceback_later()
        trace.close()
    long_gaps = [(round(1000 * (t_end - t0 - g), 1), round(1000 * g, 1)) for t_end, g in zip(stamps, gaps) if g > 0.05]
    out = {"labels": 2 * n_per_class + 1, "open_frames": len(stack), "first_retrain_s": first,
           "latency_s": live.latencies[-1], "max_ui_gap_ms": 1000 * max(gaps) if gaps else None,
           "gaps_over_50ms": long_gaps,
           "gc_over_20ms": [(g, round(ms, 1)) for g, ms in collections if ms > 20], "load_average": list(os.getloadavg()),
           "before_after": [dock.finetune.outcome.before.get("accuracy"), dock.finetune.outcome.after.get("accuracy")]}
    dock.live.toggle.setChecked(False)
    _wait(app, lambda: not dock.finetune.controls.running and not dock.next.controls.running)  # the re-rank
    viewer.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_live_mode", description=__doc__.splitlines()[0])
    p.add_argument("--labels", default="10,50", help="labels per class before the measured one")
    p.add_argument("--size", type=int, default=160)
    p.add_argument("--out", default="benchmark-results")
    p.add_argument("--switch-interval", type=float, default=None, help="sys.setswitchinterval (s) for the run")
    p.add_argument("--profile", default=None, help="write a cProfile of the UI thread to PROFILE.<labels>")
    args = p.parse_args(argv)
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["NAPARI_CELLCLASS_CONFIG_DIR"] = str(Path(tmp) / "config")  # the built-in model, not the user's
        for n in (int(s) for s in args.labels.split(",")):
            rows.append(_one(n, args.size, Path(tmp), f"{args.profile}.{n}" if args.profile else None))
            print(f"[live_mode] {json.dumps(rows[-1])}", file=sys.stderr, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "live_mode.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
