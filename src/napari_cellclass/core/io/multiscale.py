"""Image pyramids (napari multiscale layers, OME-Zarr, lists of arrays) as one thing.

A :class:`Pyramid` is a list of arrays of the same image at falling resolution —
numpy, dask or zarr arrays, never read here — with, per level, where its pixels sit
in level-0 pixels (``factor``, ``offset``) and, when the source says so, their
physical size.  The engine never reads level 0 of a large pyramid unless asked to:

* whole-image classification reads the *smallest* level that is still at least the
  model's input size (the network resizes to that size anyway, so the result matches
  level 0 within the resizing's rounding);
* tiled maps and explanations read the level whose pixel size matches the model's
  training resolution (``pixel_size``), or a level chosen by index, else level 0.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ImageError
from .images import ChannelAxis, inspect


@dataclass(frozen=True)
class Level:
    """One level of a pyramid: its array and where its pixels sit in level-0 pixels."""

    index: int
    data: Any
    factor: tuple[float, float]  # (y, x) level-0 pixels per pixel of this level
    offset: tuple[float, float] = (0.0, 0.0)  # level-0 position of this level's pixel (0, 0)
    pixel_size: tuple[float, float] | None = None  # physical (y, x) size of one pixel

    def to_level0(self, scale: Sequence[float], translate: Sequence[float]) -> tuple[tuple[float, float], tuple[float, float]]:
        """Compose a placement in this level's pixels with the level's own placement:
        the same thing in level-0 pixels (what napari calls data coordinates)."""
        fy, fx = self.factor
        return ((fy * scale[0], fx * scale[1]),
                (self.offset[0] + fy * translate[0], self.offset[1] + fx * translate[1]))


@dataclass
class Pyramid:
    """A multiscale image.  ``channel_axis``/``rgb`` apply to every level."""

    levels: list[Level]
    name: str = "image"
    channel_axis: ChannelAxis = "auto"
    rgb: bool | None = None
    channel_names: list[str] = field(default_factory=list)
    axes: str | None = None  # e.g. "cyx", when the source names its axes
    unit: str | None = None  # of ``Level.pixel_size``

    @classmethod
    def from_arrays(cls, arrays: Sequence[Any], name: str = "image", channel_axis: ChannelAxis = "auto",
                    rgb: bool | None = None) -> Pyramid:
        """Levels from their shapes; level pixel ``i`` covers level-0 pixels ``i * f`` to
        ``(i + 1) * f``, so its centre sits at ``i * f + (f - 1) / 2`` (as OME-Zarr writers
        place downsampled levels)."""
        arrays = list(arrays)
        if not arrays:
            raise ImageError(f"{name}: a multiscale image needs at least one level, got none", "pass a list of arrays")
        for k, a in enumerate(arrays):
            if not hasattr(a, "shape") or not hasattr(a, "dtype"):
                raise ImageError(f"{name}: level {k} is a {type(a).__name__}, not an array",
                                 "pass numpy, dask or zarr arrays, largest first")
        layout0, _ = inspect(arrays[0], channel_axis, None, rgb, name)
        h0, w0 = layout0.height, layout0.width
        levels = []
        for k, a in enumerate(arrays):
            shape = tuple(a.shape)
            if len(shape) != len(arrays[0].shape):
                raise ImageError(f"{name}: level {k} has {len(shape)} dimensions {shape}, level 0 has "
                                 f"{len(arrays[0].shape)} {tuple(arrays[0].shape)}",
                                 "every level of a pyramid must have the same axes")
            h, w = shape[layout0.y_axis], shape[layout0.x_axis]
            fy, fx = h0 / h, w0 / w
            levels.append(Level(k, a, (fy, fx), ((fy - 1) / 2, (fx - 1) / 2)))
        return cls(levels, name, channel_axis, rgb)

    def __len__(self) -> int:
        return len(self.levels)

    def validate(self, channel_axis: ChannelAxis | None = None, in_chans: int | None = None) -> None:
        """Every level has the same channels and frames, and levels get no larger."""
        axis = self.channel_axis if channel_axis in (None, "auto") else channel_axis
        first, _ = inspect(self.levels[0].data, axis, in_chans, self.rgb, f"{self.name}, level 0")
        prev = (first.height, first.width)
        for lvl in self.levels[1:]:
            lay, _ = inspect(lvl.data, axis, in_chans, self.rgb, f"{self.name}, level {lvl.index}")
            if lay.n_channels != first.n_channels:
                raise ImageError(
                    f"{self.name}: the pyramid's levels disagree in channels: level {lvl.index} has "
                    f"{lay.n_channels}, level 0 has {first.n_channels}",
                    "rebuild the pyramid from one image (every level needs the same channels)")
            if lay.n_frames != first.n_frames:
                raise ImageError(
                    f"{self.name}: level {lvl.index} has {lay.n_frames} frames, level 0 has {first.n_frames}",
                    "rebuild the pyramid from one image (every level needs the same frames)")
            if lay.height > prev[0] or lay.width > prev[1]:
                raise ImageError(
                    f"{self.name}: level {lvl.index} ({lay.height}x{lay.width}) is larger than the level "
                    f"before it ({prev[0]}x{prev[1]})", "order the levels largest first")
            prev = (lay.height, lay.width)

    def plane_hw(self, k: int) -> tuple[int, int]:
        lay, _ = inspect(self.levels[k].data, self.channel_axis, None, self.rgb, self.name)
        return lay.height, lay.width

    def for_classification(self, input_hw: tuple[int, int]) -> Level:
        """The smallest level that is at least ``input_hw`` on both sides (level 0 when
        even that is smaller)."""
        best = self.levels[0]
        for lvl in self.levels[1:]:
            h, w = self.plane_hw(lvl.index)
            if h >= input_hw[0] and w >= input_hw[1]:
                best = lvl
        return best

    def for_map(self, level: int | None = None, pixel_size: float | None = None) -> Level:
        """The level to tile: ``level`` when given, else the one whose pixel size is
        nearest ``pixel_size`` (same unit as the pyramid's), else level 0."""
        if level is not None:
            if not -len(self) <= int(level) < len(self):
                raise ImageError(f"{self.name}: level {level} does not exist (the pyramid has {len(self)}: 0..{len(self) - 1})",
                                 "choose an existing level, or leave it unset for the automatic choice")
            return self.levels[int(level)]
        if pixel_size is None:
            return self.levels[0]
        if pixel_size <= 0:
            raise ImageError(f"pixel size must be positive, got {pixel_size}")
        sized = [lvl for lvl in self.levels if lvl.pixel_size is not None]
        if not sized:
            raise ImageError(f"{self.name}: the pyramid does not say its pixel size, so none can match {pixel_size}",
                             "choose the level by index instead (level=...)")
        return min(sized, key=lambda lvl: abs(math.log(math.sqrt(lvl.pixel_size[0] * lvl.pixel_size[1]) / pixel_size)))


Purpose = Literal["classify", "map"]


@dataclass(frozen=True)
class LevelPick:
    """What a caller wants from a pyramid: see :meth:`Pyramid.for_classification` and
    :meth:`Pyramid.for_map`.  ``lists``: a plain list of arrays is a pyramid here."""

    purpose: Purpose
    input_hw: tuple[int, int] = (224, 224)
    level: int | None = None
    pixel_size: float | None = None
    lists: bool = False
    #: the model's recorded training pixel size: used when ``pixel_size`` and ``level``
    #: are unset and the pyramid states its pixel sizes
    trained_pixel_size: float | None = None


def is_zarr_path(src: Any) -> bool:
    """A path or URL that names a Zarr store (a ``.zarr`` folder, or one holding Zarr metadata)."""
    if not isinstance(src, (str, os.PathLike)):
        return False
    s = os.fspath(src)
    if "://" in s:
        return s.rstrip("/").lower().endswith(".zarr") or s.lower().startswith(("s3://", "gs://"))
    if s.rstrip("/\\").lower().endswith(".zarr"):
        return True
    return os.path.isdir(s) and any(os.path.exists(os.path.join(s, m)) for m in ("zarr.json", ".zattrs", ".zgroup"))
