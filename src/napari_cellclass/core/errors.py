"""Errors that carry a message a biologist can act on.

Every error raised for bad input names the problem *and* the fix, so the CLI can
print it on one line and the widgets can show it as a notification verbatim.
"""

from __future__ import annotations


class CellclassError(Exception):
    """Base class: ``str(err)`` is the full, user-facing message."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(problem if not fix else f"{problem} — {fix}")


class ImageError(CellclassError, ValueError):
    """An image or layer that cannot be turned into the canonical (C, H, W) form."""


class ChannelMismatchError(ImageError):
    """The image has a different number of channels than the model expects."""


class ModelFileError(CellclassError, ValueError):
    """A model file that is missing, truncated, foreign or inconsistent."""


class ArchitectureError(CellclassError, ValueError):
    """An unknown architecture or preset, or options that do not fit it."""


class WeightsError(CellclassError, RuntimeError):
    """Pretrained or local weights that cannot be obtained or do not fit."""


class DataError(CellclassError, ValueError):
    """A data set (folder, CSV manifest, annotations) that cannot be used."""


class Cancelled(CellclassError):
    """Raised inside long jobs when the user cancelled; callers treat it as a stop."""

    def __init__(self, what: str = "the job") -> None:
        super().__init__(f"{what} was cancelled")
