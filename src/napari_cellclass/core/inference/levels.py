"""Which pyramid level each entry point reads, in one place, so the engine and the
viewer (which must place the result in world coordinates) always agree."""

from __future__ import annotations

from typing import Any

from ..io.images import ChannelAxis
from ..io.multiscale import Level, LevelPick
from ..io.pyramid_source import pick_level
from ..models.bundle import ModelBundle
from .options import RunOptions


def trained_pixel_size(bundle: ModelBundle) -> float | None:
    """The pixel size the model was trained at, when its provenance records one."""
    value = (bundle.provenance or {}).get("pixel_size")
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def classify_pick(bundle: ModelBundle) -> LevelPick:
    return LevelPick("classify", bundle.input_size, lists=True)


def map_pick(bundle: ModelBundle, options: RunOptions | None = None) -> LevelPick:
    """Tiled maps and explanations: ``options.level`` / ``options.pixel_size`` when set,
    else the model's training pixel size, else level 0."""
    o = options or RunOptions()
    return LevelPick("map", bundle.input_size, o.level, o.pixel_size, lists=True,
                     trained_pixel_size=trained_pixel_size(bundle))


def chosen_level(src: Any, pick: LevelPick, channel_axis: ChannelAxis = "auto") -> Level | None:
    """The level of ``src`` that a run with ``pick`` reads; None for a plain image."""
    picked = pick_level(src, pick, channel_axis)
    return None if picked is None else picked[1]


class LevelGrid:
    """A tile grid laid on one pyramid level, placed in level-0 pixels: what
    :meth:`scale_translate` returns is what a layer over the multiscale source needs.
    Every other attribute is the level's own grid's (cells, tiles, strides)."""

    def __init__(self, grid: Any, level: Level) -> None:
        self.grid = grid
        self.level = level

    def scale_translate(self) -> tuple[tuple[float, float], tuple[float, float]]:
        return self.level.to_level0(*self.grid.scale_translate())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.grid, name)


def level_hw(level: Level, channel_axis: ChannelAxis, rgb: bool | None, in_chans: int | None = None) -> tuple[int, int]:
    """(height, width) of a level's image plane."""
    from ..io.images import inspect

    lay, _ = inspect(level.data, channel_axis, in_chans, rgb, f"level {level.index}")
    return lay.height, lay.width
