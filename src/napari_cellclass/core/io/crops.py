"""Region annotations → pixel crops, in canonical (C, H, W) and the source's dtype.

Pixel rules (napari's: pixel (r, c) covers [r-0.5, r+0.5] x [c-0.5, c+0.5]):

* rectangle ``(y0, x0, y1, x1)``: the pixels whose *centres* lie inside the closed
  box, i.e. rows ``ceil(y0) .. floor(y1)``; the part outside the image is dropped
  (a box across the border gives a smaller crop).
* polygon: the crop of its bounding box by the same rule; ``mask_outside=True``
  sets the pixels whose centres lie outside the polygon to 0.
* point ``(y, x)`` with size ``(h, w)``: rows ``floor(y + 0.5) - h // 2`` onwards,
  ``h`` of them (the point's pixel sits at row ``h // 2`` of the crop), always
  exactly ``h x w``; where the window leaves the image it is filled by ``pad_mode``:
  ``"reflect"`` (mirror at the border pixel without repeating it — numpy's
  ``reflect``; the default, keeps texture statistics), ``"edge"`` (repeat the border
  pixel) or ``"constant"`` (0).

Only the needed region of a plane is read (``get_plane(region=...)``), so crops of
huge memory-mapped or dask images never load the whole image.  Integer images keep
their dtype so the value range (uint8 vs uint16) still means what it meant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import DataError
from .images import Layout, get_plane

PAD_MODES = ("reflect", "edge", "constant")


def read_region(data: Any, layout: Layout, frame: int, rows: slice, cols: slice, name: str = "image") -> np.ndarray:
    """(C, h, w) of ``data[frame][rows, cols]`` in the source dtype (floats as float32)."""
    plane = get_plane(data, layout, frame, name, region=(rows, cols), native=True)
    src = np.dtype(data.dtype)
    if src.kind in "biu" and plane.dtype != src:
        plane = plane.astype(src)  # native=True widened it losslessly; give it back as it was
    return plane


def box_slices(box: Sequence[float], height: int, width: int) -> tuple[slice, slice] | None:
    """Rows and columns whose pixel centres lie in the closed box, clipped to the image."""
    y0, x0, y1, x1 = (float(v) for v in box)
    y0, y1 = min(y0, y1), max(y0, y1)
    x0, x1 = min(x0, x1), max(x0, x1)
    r0, r1 = max(0, math.ceil(y0)), min(height - 1, math.floor(y1))
    c0, c1 = max(0, math.ceil(x0)), min(width - 1, math.floor(x1))
    if r1 < r0 or c1 < c0:
        return None
    return slice(r0, r1 + 1), slice(c0, c1 + 1)


def _outside(what: str, name: str, frame: int, height: int, width: int) -> DataError:
    return DataError(f"{name}, frame {frame}: the {what} covers no pixel of the {height}x{width} image",
                     "draw it over the image (coordinates are image pixels: row y, column x)")


def crop_box(data: Any, layout: Layout, frame: int, box: Sequence[float], name: str = "image") -> np.ndarray:
    sl = box_slices(box, layout.height, layout.width)
    if sl is None:
        raise _outside("rectangle", name, frame, layout.height, layout.width)
    return read_region(data, layout, frame, *sl, name)


def polygon_mask(vertices: Sequence[Sequence[float]], rows: slice, cols: slice) -> np.ndarray:
    """Boolean (h, w) mask of the pixels of the window whose centres are inside."""
    from skimage.draw import polygon2mask

    v = np.asarray(vertices, dtype=np.float64) - [rows.start, cols.start]
    return polygon2mask((rows.stop - rows.start, cols.stop - cols.start), v)


def crop_polygon(data: Any, layout: Layout, frame: int, vertices: Sequence[Sequence[float]],
                 mask_outside: bool = False, name: str = "image") -> np.ndarray:
    v = np.asarray(vertices, dtype=np.float64)
    box = (v[:, 0].min(), v[:, 1].min(), v[:, 0].max(), v[:, 1].max())
    sl = box_slices(box, layout.height, layout.width)
    if sl is None:
        raise _outside("polygon", name, frame, layout.height, layout.width)
    crop = read_region(data, layout, frame, *sl, name)
    if mask_outside:
        crop = crop.copy()
        crop[:, ~polygon_mask(v, *sl)] = 0
    return crop


def point_window(center: Sequence[float], size: Sequence[int]) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the crop window around a point."""
    h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1:
        raise DataError(f"crop size {h}x{w} is empty", "give a crop size of at least 1x1 pixels (e.g. 64x64)")
    return math.floor(float(center[0]) + 0.5) - h // 2, math.floor(float(center[1]) + 0.5) - w // 2, h, w


def _source_index(start: int, n: int, size: int, mode: str) -> np.ndarray:
    """Source row for each of the window's ``n`` rows; -1 where ``constant`` fills."""
    idx = np.arange(start, start + n)
    if mode == "constant":
        return np.where((idx >= 0) & (idx < size), idx, -1)
    if mode == "edge":
        return np.clip(idx, 0, size - 1)
    if size == 1:
        return np.zeros_like(idx)
    period = 2 * (size - 1)
    m = np.mod(idx, period)
    return np.where(m < size, m, period - m)


def crop_point(data: Any, layout: Layout, frame: int, center: Sequence[float], size: Sequence[int],
               pad_mode: str = "reflect", name: str = "image") -> np.ndarray:
    if pad_mode not in PAD_MODES:
        raise DataError(f"unknown pad mode {pad_mode!r}", f"use one of {', '.join(PAD_MODES)}")
    top, left, h, w = point_window(center, size)
    H, W = layout.height, layout.width
    cy, cx = math.floor(float(center[0]) + 0.5), math.floor(float(center[1]) + 0.5)
    if not (0 <= cy < H and 0 <= cx < W):
        raise DataError(f"{name}, frame {frame}: point ({center[0]:g}, {center[1]:g}) lies outside the {H}x{W} image",
                        "place points on the image (coordinates are image pixels: row y, column x)")
    ri = _source_index(top, h, H, pad_mode)
    ci = _source_index(left, w, W, pad_mode)
    rv, cv = ri[ri >= 0], ci[ci >= 0]
    r0, r1, c0, c1 = int(rv.min()), int(rv.max()) + 1, int(cv.min()), int(cv.max()) + 1
    part = read_region(data, layout, frame, slice(r0, r1), slice(c0, c1), name)
    out = np.zeros((part.shape[0], h, w), dtype=part.dtype)
    rsel, csel = np.flatnonzero(ri >= 0), np.flatnonzero(ci >= 0)
    out[:, rsel[:, None], csel[None, :]] = part[:, ri[rsel][:, None] - r0, ci[csel][None, :] - c0]
    return out


def crop_item(data: Any, layout: Layout, item: Any, *, pad_mode: str = "reflect", mask_outside: bool = False,
              name: str = "image") -> np.ndarray:
    """The crop of a region :class:`~.schema.Item` (rectangle, polygon or point)."""
    if item.kind == "rectangle":
        return crop_box(data, layout, item.frame, item.box, name)
    if item.kind == "polygon":
        return crop_polygon(data, layout, item.frame, item.vertices, mask_outside, name)
    if item.kind == "point":
        return crop_point(data, layout, item.frame, item.center, item.size, pad_mode, name)
    raise DataError(f"item {item.id} is a {item.kind} annotation, not a region", "crop rectangles, polygons or points")
