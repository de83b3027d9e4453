"""Which inputs are pyramids, and the level a run reads of one (see :mod:`.multiscale`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .images import ChannelAxis
from .multiscale import Level, LevelPick, Pyramid, is_zarr_path
from .omezarr import read_omezarr


def _multiscale_data(data: Any) -> bool:
    # napari's MultiScaleData is a Sequence of arrays with a .shape of level 0
    return (not isinstance(data, np.ndarray) and isinstance(data, Sequence) and not isinstance(data, (str, bytes))
            and len(data) > 0 and all(hasattr(a, "shape") for a in data))


def as_pyramid(src: Any, pick: LevelPick | None = None) -> Pyramid | None:
    """``src`` as a :class:`Pyramid` when it is one (else None): a Pyramid, an OME-Zarr
    path, a multiscale napari layer (or anything with such ``.data``), and — where
    ``pick.lists`` — a list or tuple of arrays."""
    if isinstance(src, Pyramid):
        return src
    if is_zarr_path(src):
        return read_omezarr(src)
    pyr = getattr(src, "pyramid", None)  # an ImageFile read from an OME-Zarr store
    if isinstance(pyr, Pyramid):
        return pyr
    if hasattr(src, "data") and not hasattr(src, "shape"):  # a napari layer, LayerSource …
        data = src.data
        if getattr(src, "multiscale", None) is True or _multiscale_data(data):
            name = str(getattr(src, "name", "image"))
            return Pyramid.from_arrays(list(data), name, rgb=getattr(src, "rgb", None))
        return None
    if pick is not None and pick.lists and isinstance(src, (list, tuple)) and _multiscale_data(src):
        return Pyramid.from_arrays(list(src))
    return None


def pick_level(src: Any, pick: LevelPick | None, channel_axis: ChannelAxis = "auto",
               in_chans: int | None = None) -> tuple[Pyramid, Level] | None:
    """The pyramid ``src`` is and the level ``pick`` chooses, validated; None when ``src``
    is a single-resolution image."""
    pyr = as_pyramid(src, pick)
    if pyr is None:
        return None
    pyr.validate(channel_axis, in_chans)
    pick = pick or LevelPick("classify")
    if pick.purpose == "classify":
        return pyr, pyr.for_classification(pick.input_hw)
    size = pick.pixel_size
    if size is None and pick.level is None and any(lvl.pixel_size for lvl in pyr.levels):
        size = pick.trained_pixel_size
    return pyr, pyr.for_map(pick.level, size)
