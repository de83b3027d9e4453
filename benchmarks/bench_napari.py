"""napari: what the plugin costs the viewer.

- start-up: the time that importing every module the manifest names adds to a process
  that has already imported napari and Qt (each run in a fresh interpreter; best of N),
  and whether any of them pulled in torch;
- responsiveness: the longest gap of a 10 ms QTimer heartbeat on the Qt thread while the
  Classify dock's inference job runs in its worker, and while a training run
  (``core.train.train``) runs in a napari thread worker — what the fine-tune panel does.

Needs a display (Xvfb on a server); without one the responsiveness rows are skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ._measure import Result

_STARTUP = r"""
import json, sys, time
import napari, napari.qt, qtpy.QtWidgets, npe2  # what napari itself has loaded before plugins
t0 = time.perf_counter()
pm = npe2.PluginManager.instance()
pm.discover()
mf = pm.get_manifest("napari-cellclass")
import importlib
names = sorted({c.python_name.split(":")[0] for c in mf.contributions.commands or [] if c.python_name})
for name in names:
    importlib.import_module(name)
t1 = time.perf_counter()
print(json.dumps({"seconds": t1 - t0, "modules": names, "torch": "torch" in sys.modules, "timm": "timm" in sys.modules}))
"""
_BASELINE = _STARTUP.replace('mf = pm.get_manifest("napari-cellclass")', "mf = None").replace(
    "for c in mf.contributions.commands or []", "for c in []")


def _best_subprocess(code: str, runs: int) -> dict:
    best: dict | None = None
    env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
        if out.returncode != 0:
            raise RuntimeError(f"start-up probe failed: {out.stderr.strip()[-800:]}")
        rec = json.loads(out.stdout.strip().splitlines()[-1])
        if best is None or rec["seconds"] < best["seconds"]:
            best = rec
    assert best is not None
    return best


def _startup(cfg: dict) -> list[Result]:
    runs = max(1, cfg["repeats"])
    ours = _best_subprocess(_STARTUP, runs)
    base = _best_subprocess(_BASELINE, runs)
    added = max(0.0, ours["seconds"] - base["seconds"])
    return [Result("napari", "start-up time the plugin adds (manifest + every python_name module)", added, "s",
                   None, "", "< 0.3 s", "cpu",
                   notes="" if not (ours["torch"] or ours["timm"]) else "WARNING: a manifest module imported torch/timm",
                   extra={"modules": len(ours["modules"]), "imports_torch": ours["torch"], "imports_timm": ours["timm"]})]


class _Heartbeat:
    def __init__(self, interval_ms: int = 10) -> None:
        from qtpy.QtCore import QTimer

        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))

    def measure(self, start_worker) -> tuple[float, float, int]:  # noqa: ANN001 - returns (max gap s, run s, ticks)
        from qtpy.QtCore import QEventLoop

        from qtpy.QtCore import QTimer

        loop = QEventLoop()
        self.ticks.clear()
        self.timer.start()
        worker = start_worker()
        t0 = time.perf_counter()
        # a worker that finished before we could connect to it must not hang the loop:
        # poll its state as well as listening for the signal
        worker.finished.connect(loop.quit)
        poll = QTimer()
        poll.setInterval(50)
        poll.timeout.connect(lambda: None if worker.is_running else loop.quit())
        poll.start()
        loop.exec()
        poll.stop()
        t1 = time.perf_counter()
        self.timer.stop()
        during = [t0, *[t for t in self.ticks if t0 <= t <= t1], t1]
        return float(np.diff(during).max()), t1 - t0, len(during) - 2


def _responsiveness(cfg: dict, device: torch.device) -> list[Result]:
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY") and os.environ.get("QT_QPA_PLATFORM") != "offscreen":
        return [Result("napari", "heartbeat", float("nan"), "ms", notes="skipped: no display; run under xvfb-run -a")]
    import napari
    from napari.qt.threading import create_worker

    from napari_cellclass import build_model, save_model
    from napari_cellclass.core.synth import generate
    from napari_cellclass.widgets.classify import ClassifyDock
    from napari_cellclass.app.session import ModelChoice, Session
    from napari_cellclass.app.settings import Settings

    out = []
    with tempfile.TemporaryDirectory(prefix="cellclass-bench-") as tmp:
        size = cfg["train_size"]
        path = save_model(build_model(cfg["predict_arch"], classes=["a", "b"], input_size=(size, size)), Path(tmp) / "m.safetensors")
        session = Session(Settings(Path(tmp) / "settings.json"))
        session.set_choice(ModelChoice("file", str(path)))
        session.set_device(str(device))
        viewer = napari.Viewer(show=False)
        try:
            dock = ClassifyDock(viewer, session)
            n = max(8, int(cfg["napari_seconds"] * 16))
            layer = viewer.add_image(np.random.default_rng(0).random((n, size, size)).astype(np.float32), name="stack")
            dock.layers.set_selected([layer])
            dock.channels.set_axis("none")
            beat = _Heartbeat()
            gap, secs, ticks = beat.measure(dock.run)
            out.append(Result("napari", f"longest heartbeat gap, Classify dock inferring {n} frames", gap * 1000, "ms",
                               None, "", "< 100 ms", str(device), extra={"run_s": secs, "ticks": ticks}))

            from napari_cellclass.core.training.api import train

            data = generate("cell-line", cfg["train_n"], seed=0, size=(size, size))
            items = [(img, lab, f"i{i}") for i, (img, lab) in enumerate(zip(data.images, data.labels))]
            epochs = max(1, int(cfg["napari_seconds"]))

            def start_training():
                gen = train(cfg["train_arch"], items, classes=data.classes, epochs=epochs, batch_size=cfg["train_batch"],
                            input_size=(size, size), pretrained=False, device=str(device), val_fraction=0.25)
                worker = create_worker(lambda: (yield from gen))
                worker.start()
                return worker

            gap, secs, ticks = beat.measure(start_training)
            out.append(Result("napari", f"longest heartbeat gap, training {epochs} epoch(s) in a worker", gap * 1000, "ms",
                              None, "", "< 100 ms", str(device), extra={"run_s": secs, "ticks": ticks}))
        finally:
            viewer.close()
    return out


def run(cfg: dict, device: torch.device) -> list[Result]:
    return _startup(cfg) + _responsiveness(cfg, device)
