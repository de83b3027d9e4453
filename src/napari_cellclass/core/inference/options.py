"""How to run a model over images — the same five choices every entry point takes."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..errors import CellclassError


@dataclass(frozen=True)
class RunOptions:
    """Device, batch size, which axis holds the channels, which channels to use, mixed precision.

    ``predict``, ``predict_records``, ``predict_members``, ``predict_map``, ``explain*`` and
    ``evaluate`` take one of these as ``options=`` (it then replaces their separate
    keywords), so a caller — the viewer's session, the CLI, a script — builds it once
    and hands the same choices to every step.
    """

    device: Any = "auto"  # "auto" | "cpu" | "cuda[:N]" | "mps" | torch.device
    batch_size: int = 32
    channel_axis: Any = "auto"  # "auto" | "none" | int
    channels: tuple[int, ...] | None = None
    amp: bool = True
    #: for a pyramid's tiled maps and explanations: the level to tile (None: automatic),
    #: or the model's training pixel size (in the pyramid's unit) to match
    level: int | None = None
    pixel_size: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.batch_size, bool) or int(self.batch_size) != self.batch_size or self.batch_size < 1:
            raise CellclassError(f"batch size must be at least 1, got {self.batch_size}")
        object.__setattr__(self, "batch_size", int(self.batch_size))
        if self.channels is not None:
            object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))

    @property
    def channel_list(self) -> list[int] | None:
        return None if self.channels is None else list(self.channels)

    def but(self, **changes: Any) -> RunOptions:
        """A copy with some choices changed."""
        return replace(self, **changes)


def run_options(options: RunOptions | None, **given: Any) -> RunOptions:
    """``options`` when the caller passed one, else the separate keywords as RunOptions."""
    if options is not None:
        if not isinstance(options, RunOptions):
            raise CellclassError(f"options must be RunOptions, got {type(options).__name__}")
        return options
    return RunOptions(**given)
