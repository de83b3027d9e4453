"""What a training run reports while it runs (:class:`TrainEvent`) and what it returns."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..models.bundle import ModelBundle

EVENT_KINDS = ("start", "step", "epoch", "stage", "done", "cancelled")


@dataclass
class TrainEvent:
    """One progress report; ``kind`` is one of :data:`EVENT_KINDS`.

    ``step``/``steps`` count optimisation steps over the whole run (all epochs and
    stages), so ``step / steps`` is the overall progress a bar shows.
    """

    kind: str
    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float | None
    val_loss: float | None
    metrics: dict[str, float]
    eta_s: float | None
    best_epoch: int | None
    message: str = ""

    def line(self) -> str:
        """One human-readable line (CLI progress, logs)."""
        parts = [f"epoch {self.epoch}/{self.epochs}", f"step {self.step}/{self.steps}"]
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        if self.val_loss is not None:
            parts.append(f"val_loss {self.val_loss:.4f}")
        parts += [f"{k} {v:.3f}" for k, v in self.metrics.items()]
        if self.eta_s is not None:
            parts.append(f"ETA {_clock(self.eta_s)}")
        if self.message:
            parts.append(self.message)
        return "  ".join(parts)


@dataclass
class TrainResult:
    bundle: ModelBundle  # best model (keep-best); a new bundle, the input is never modified
    history: list[dict[str, Any]] = field(default_factory=list)  # one dict per epoch
    cancelled: bool = False
    stopped_early: bool = False


def _clock(seconds: float) -> str:
    s = int(round(max(0.0, seconds)))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Eta:
    """Remaining time from the mean duration of the steps done so far."""

    def __init__(self, total_steps: int) -> None:
        self.total = max(1, total_steps)
        self.t0 = time.perf_counter()
        self.done = 0

    def update(self, done: int) -> float | None:
        self.done = done
        if done <= 0:
            return None
        rate = (time.perf_counter() - self.t0) / done
        return rate * max(0, self.total - done)

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0
