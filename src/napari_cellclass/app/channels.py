"""Channels as the docks see them (no Qt, no napari): what a layer's metadata says
about its channel axis, layers combined into one multichannel input, and engine
messages reworded to point at the dock's channel picker instead of the API.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.errors import CellclassError

SAMPLE_KEY = "cellclass_sample"


def channel_names_of(metadata: dict[str, Any]) -> list[str] | None:
    """The channel names a layer's metadata gives (its own ``channel_names`` or the sample's)."""
    names = metadata.get("channel_names") or (metadata.get(SAMPLE_KEY) or {}).get("channel_names")
    return [str(n) for n in names] if isinstance(names, (list, tuple)) and names else None


def metadata_channel_axis(shape: Sequence[int], rgb: bool, metadata: dict[str, Any]) -> int | None:
    """The channel axis the layer's metadata settles, or None where it says nothing.

    In order: an explicit ``channel_axis``; an ``axes`` string with a ``C`` (``"CYX"``);
    channel names whose count matches exactly one axis before the image plane.  An RGB
    layer's channels are napari's business (its ``rgb`` flag), so it gets None.
    """
    shape = tuple(int(s) for s in shape)
    if rgb or len(shape) < 3:
        return None
    axis = metadata.get("channel_axis")
    if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool) and -len(shape) <= axis < len(shape) - 2:
        return int(axis) % len(shape)
    sample = metadata.get(SAMPLE_KEY) or {}
    axes = metadata.get("axes") or sample.get("axes")
    if isinstance(axes, str) and len(axes) == len(shape) and axes.upper().count("C") == 1:
        c = axes.upper().index("C")
        return c if c < len(shape) - 2 else None
    names = channel_names_of(metadata)
    if names:
        fits = [ax for ax in range(len(shape) - 2) if shape[ax] == len(names)]
        if len(fits) == 1:
            return fits[0]
    return None


# --------------------------------------------------------------------------- combining layers
class ChannelStack:
    """Same-shaped arrays read as the channels of one array, stacked at ``axis``.

    Lazy: indexing stacks only the indexed part of each array, so a plane of a stack
    of channel layers reads one plane per layer (and a dask layer stays lazy)."""

    def __init__(self, arrays: Sequence[Any], axis: int) -> None:
        self.arrays = list(arrays)
        self.axis = int(axis)
        first = tuple(int(s) for s in self.arrays[0].shape)
        self.shape = first[: self.axis] + (len(self.arrays),) + first[self.axis:]
        self.dtype = np.result_type(*[np.dtype(a.dtype) for a in self.arrays])
        self.ndim = len(self.shape)

    def __getitem__(self, index: Any) -> np.ndarray:
        index = index if isinstance(index, tuple) else (index,)
        index = tuple(index) + (slice(None),) * (self.ndim - len(index))
        pick, rest = index[self.axis], index[: self.axis] + index[self.axis + 1:]
        chosen = self.arrays[pick] if isinstance(pick, slice) else [self.arrays[int(pick)]]
        parts = [np.asarray(a[rest], dtype=self.dtype) for a in chosen]
        where = sum(not isinstance(i, (int, np.integer)) for i in index[: self.axis])
        out = np.stack(parts, axis=where)
        return out if isinstance(pick, slice) else np.take(out, 0, axis=where)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[(slice(None),) * self.ndim]
        return out if dtype is None else out.astype(dtype)


def combined_name(names: Sequence[str], groups: Sequence[str | None]) -> str:
    """A name for layers combined as channels: their sample's title when they share one."""
    if groups and groups[0] and all(g == groups[0] for g in groups):
        return str(groups[0])
    return " + ".join(names)


def combine_check(names: Sequence[str], shapes: Sequence[Sequence[int]], rgbs: Sequence[bool]) -> tuple[int, ...]:
    """The common shape of layers to combine as channels, or an error saying why they cannot be."""
    from ..core.errors import ImageError

    if len(names) < 2:
        raise ImageError(
            "'combine selected layers as channels' needs at least two image layers",
            "tick (Classify) or select in napari's layer list (Explain) each channel's layer, in channel order",
        )
    if any(rgbs):
        bad = [n for n, r in zip(names, rgbs) if r]
        raise ImageError(f"RGB layers cannot be combined as channels: {', '.join(repr(n) for n in bad)}",
                         "combine greyscale layers (one per channel), or untick the RGB layers")
    first = tuple(int(s) for s in shapes[0])
    odd = [f"'{n}' {tuple(s)}" for n, s in zip(names, shapes) if tuple(int(v) for v in s) != first]
    if odd:
        raise ImageError(
            f"layers combined as channels must have one shape; '{names[0]}' is {first} but {', '.join(odd)}",
            "tick only the channel layers of one image (same height, width and frames)",
        )
    if len(first) not in (2, 3):
        raise ImageError(f"'{names[0]}' {first}: only 2-D images or stacks (T, H, W) can be combined as channels",
                         "combine one greyscale layer per channel")
    return first


# --------------------------------------------------------------------------- messages
_PICKER = "in the channel picker of this dock"


def _dock_fix(problem: str, fix: str) -> str | None:
    if "channels=[" in fix or fix.startswith("choose exactly"):
        m = re.search(r"expects (\d+)", problem)
        n = m.group(1) if m else "the model's number of"
        return (f"tick {n} channel(s) {_PICKER} (or 'combine selected layers as channels' for one layer per "
                "channel), or use a model trained on this kind of image")
    if "channel_axis" in fix:
        return (f"{_PICKER}, set 'channel axis' to the axis that holds the channels, or to "
                "'none: a stack of greyscale planes'; or select a single plane first")
    return None


def for_docks(err: CellclassError) -> CellclassError:
    """The same error, its fix reworded for a dock user: the channel picker, not ``channel_axis=``."""
    new = _dock_fix(err.problem, err.fix or "")
    if new is None:
        return err
    out = type(err).__new__(type(err))
    CellclassError.__init__(out, err.problem, new)
    return out


def dock_text(message: str) -> str:
    """:func:`for_docks` for a message that is already text (``problem — fix``)."""
    problem, sep, fix = message.partition(" — ")
    new = _dock_fix(problem, fix) if sep else None
    return message if new is None else f"{problem} — {new}"
