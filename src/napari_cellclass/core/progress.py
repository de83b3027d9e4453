"""One progress event for every long job, and one way to run a job to its result.

Jobs are generators: they ``yield`` :class:`Progress` reports (or a subclass that
adds its own detail, such as :class:`~core.training.events.TrainEvent`) and
``return`` their result.  A progress bar needs only ``done``/``total``/``message``
of any of them; :func:`drain` runs a job to the end for callers that want only the
result (the API's ``fit``, tests, scripts), optionally passing each report on.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

R = TypeVar("R")


@dataclass
class Progress:
    """``done`` of ``total`` units (``total`` 0: not known yet) of a job at ``stage``."""

    done: int = 0
    total: int = 0
    message: str = ""
    stage: str = ""
    #: a finished piece of the result travelling with the report (e.g. one layer's predictions)
    item: Any = None

    @property
    def fraction(self) -> float | None:
        """Overall progress 0..1, or None while the total is unknown."""
        return min(1.0, self.done / self.total) if self.total else None


def drain(job: Generator[Any, Any, R], on_progress: Callable[[Any], None] | None = None) -> R:
    """Run ``job`` to the end and return what it returns; ``on_progress`` sees each report."""
    while True:
        try:
            event = next(job)
        except StopIteration as done:
            return done.value
        if on_progress is not None:
            on_progress(event)


def relay(job: Generator[Any, Any, R], transform: Callable[[Any], Any]) -> Generator[Any, None, R]:
    """``yield from job`` with each report passed through ``transform`` (a ``None`` result is dropped);
    returns what ``job`` returns.  Closing the relay closes ``job``."""
    try:
        while True:
            try:
                event = next(job)
            except StopIteration as done:
                return done.value
            out = transform(event)
            if out is not None:
                yield out
    finally:
        job.close()
