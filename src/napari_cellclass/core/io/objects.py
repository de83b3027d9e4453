"""Segmented objects of a label image → their boxes and pixel crops.

A label image gives every object an integer id (0 = background), as cellpose,
StarDist, micro-sam or a threshold + ``skimage.measure.label`` write them.  Each
object's crop is its bounding box (skimage's ``regionprops`` convention: rows
``r0 .. r1-1``) grown by ``margin`` pixels on every side and clipped to the image,
so objects touching the border give smaller crops, never padding.  With
``mask=True`` every pixel of the crop that does not belong to the object (the
background and the neighbouring objects) is set to 0 in the image's own units, so
the network sees the object alone.

Only the label planes' boxes are kept for a whole image (a few numbers per object);
crops are cut one at a time, so 10,000 objects cost 10,000 small reads, not a copy.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ImageError
from .crops import read_region
from .images import Layout


@dataclass(frozen=True)
class ObjectBox:
    """One object of one frame: its id, centroid, pixel count and bounding box."""

    frame: int
    label: int
    centroid: tuple[float, float]  # (y, x) in image pixels
    area: int
    bbox: tuple[int, int, int, int]  # (r0, c0, r1, c1), r1/c1 exclusive (regionprops)


def check_labels(labels: Any, layout: Layout, name: str = "labels", image_name: str = "image") -> Any:
    """``labels`` as an array of (H, W) or (T, H, W) matching ``layout``'s grid, or a clear error.

    A single (H, W) label image of a stack applies to every frame (a fixed segmentation).
    The array is not copied: planes are read one at a time by :func:`label_plane`.
    """
    if labels is None:
        raise ImageError(f"{name}: there is no label image", "pick a Labels layer or a label image file")
    if hasattr(labels, "data") and not hasattr(labels, "shape"):  # a napari Labels layer
        labels = labels.data
    if not hasattr(labels, "shape") or not hasattr(labels, "dtype"):
        labels = np.asarray(labels)
    dtype = np.dtype(labels.dtype)
    if dtype.kind == "f":
        raise ImageError(f"{name}: the label image holds floating-point values ({dtype})",
                         "use an integer label image (0 = background, 1, 2, … one id per object), "
                         "e.g. skimage.measure.label(mask) or labels.astype(int) when the values are whole numbers")
    if dtype.kind not in "biu":
        raise ImageError(f"{name}: pixel type {dtype} is not a label image", "use an integer array, one id per object")
    grid = (layout.height, layout.width)
    shape = tuple(int(s) for s in labels.shape)
    if shape[-2:] != grid or len(shape) not in (2, 3):
        want = f"{grid[0]}x{grid[1]}" + (f" (or {layout.n_frames}x{grid[0]}x{grid[1]} for the stack)" if layout.is_stack else "")
        raise ImageError(f"{name}: the label image has shape {shape}, but {image_name} is {layout.describe()}",
                         f"segment the same image: the label image must be {want}")
    if len(shape) == 3 and shape[0] != layout.n_frames:
        raise ImageError(f"{name}: the label stack has {shape[0]} frames but {image_name} has {layout.n_frames}",
                         "use one label plane per frame (or a single 2-D label image for every frame)")
    return labels


def label_plane(labels: Any, frame: int, name: str = "labels") -> np.ndarray:
    """Frame ``frame`` of checked labels as an integer (H, W) array; negative ids are refused."""
    plane = np.asarray(labels[frame] if labels.ndim == 3 else labels)
    if plane.dtype == np.bool_:
        plane = plane.astype(np.uint8)  # a binary mask is one object
    if plane.dtype.kind == "i" and plane.size and int(plane.min()) < 0:
        raise ImageError(f"{name}, frame {frame}: the label image has negative values (min {int(plane.min())})",
                         "object ids must be 0 (background) or positive; relabel, e.g. skimage.measure.label(labels > 0)")
    return plane


def object_boxes(plane: np.ndarray, frame: int = 0) -> list[ObjectBox]:
    """Every object of one label plane, in increasing id order (none: an empty list)."""
    from skimage.measure import regionprops

    out = []
    for r in regionprops(plane):
        cy, cx = r.centroid
        r0, c0, r1, c1 = r.bbox
        out.append(ObjectBox(frame, int(r.label), (float(cy), float(cx)), int(r.area), (int(r0), int(c0), int(r1), int(c1))))
    return out


def crop_window(box: ObjectBox, margin: int, height: int, width: int) -> tuple[slice, slice]:
    """The bounding box grown by ``margin`` on every side, clipped to the image."""
    r0, c0, r1, c1 = box.bbox
    return (slice(max(0, r0 - margin), min(height, r1 + margin)), slice(max(0, c0 - margin), min(width, c1 + margin)))


def object_crop(data: Any, layout: Layout, plane: np.ndarray, box: ObjectBox, margin: int = 0,
                mask: bool = False, name: str = "image") -> np.ndarray:
    """(C, h, w) crop of one object in the source dtype; ``mask`` zeroes what is not the object."""
    rows, cols = crop_window(box, margin, layout.height, layout.width)
    crop = read_region(data, layout, box.frame, rows, cols, name)
    if mask:
        crop = crop.copy()
        crop[:, plane[rows, cols] != box.label] = 0
    return crop


def check_margin(margin: Any) -> int:
    if isinstance(margin, bool) or int(margin) != margin or margin < 0:
        raise ImageError(f"object margin must be a whole number of pixels >= 0, got {margin!r}",
                         "use 0 for the bounding box exactly, or e.g. 8 to include some surroundings")
    return int(margin)


def iter_object_boxes(labels: Any, n_frames: int, name: str = "labels") -> Iterator[tuple[int, np.ndarray, list[ObjectBox]]]:
    """(frame, label plane, its objects) for every frame of checked labels."""
    for t in range(n_frames):
        plane = label_plane(labels, t, name)
        yield t, plane, object_boxes(plane, t)
