"""Timing and peak-memory helpers shared by the benchmark sections."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch


@dataclass
class Result:
    section: str
    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""
    device: str = ""
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        return self.value / self.baseline

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ratio"] = self.ratio
        return d


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(fn: Callable[[], Any], device: torch.device, repeats: int = 3, warmup: int = 1) -> float:
    """Best wall time of ``repeats`` runs after ``warmup`` (best-of filters noise from other processes)."""
    for _ in range(warmup):
        fn()
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


class PeakRSS:
    """Peak resident memory above the starting level, sampled in a thread (CPU runs)."""

    def __init__(self, interval: float = 0.005) -> None:
        import psutil

        self._proc = psutil.Process()
        self.interval = interval
        self.start = 0
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def delta_mb(self) -> float:
        return (self.peak - self.start) / 2**20


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, float]]:
    """Yields a dict that holds ``peak_mb`` (GPU: allocator peak; CPU: RSS growth) afterwards."""
    out: dict[str, float] = {}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        yield out
        torch.cuda.synchronize(device)
        out["peak_mb"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        return
    with PeakRSS() as rss:
        yield out
    out["peak_mb"] = rss.delta_mb


class VirtualImage:
    """A procedurally generated image of any size that never exists in memory as a whole.

    Tiles are computed on demand from their coordinates, so a benchmark measures the
    memory of the tiling algorithm, not of the test image.
    """

    def __init__(self, height: int, width: int, channels: int = 3) -> None:
        import numpy as np

        self.shape = (height, width, channels)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 3

    def __getitem__(self, index):  # noqa: ANN001 - numpy-style index
        import numpy as np

        ys, xs, cs = (index + (slice(None),) * 3)[:3]
        y = np.arange(self.shape[0])[ys]
        x = np.arange(self.shape[1])[xs]
        c = np.arange(self.shape[2])[cs]
        yy, xx = np.meshgrid(y, x, indexing="ij")
        base = ((np.sin(yy / 37.0) + np.cos(xx / 23.0)) * 60 + 128).astype(np.uint8)
        out = np.stack([base + np.uint8(17 * k) for k in np.atleast_1d(c)], axis=-1)
        return out if not np.isscalar(c) and np.ndim(c) else out[..., 0]
