"""Any microscopy array in, one canonical form out: float32 ``(C, H, W)`` per plane.

napari layers and image files arrive as greyscale ``(H, W)``, RGB/RGBA
``(H, W, 3|4)``, channel-first ``(C, H, W)`` and stacks ``(T|Z, H, W)``,
``(T, C, H, W)``, ``(T, H, W, 3|4)``.  Which axis holds the channels is guessed by
explicit, documented rules (:func:`guess_layout`); whenever the rules cannot decide,
the error names the shape and the ``channel_axis`` option that settles it.  Planes
are cut lazily, so a dask- or memory-mapped stack is read one plane at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union

import numpy as np

from ..errors import ChannelMismatchError, ImageError

#: ``"auto"`` guesses, ``"none"`` says "no channel axis" (greyscale image or stack),
#: an int names the axis (negative counts from the end).
ChannelAxis = Union[int, Literal["auto", "none"]]

MAX_NDIM = 4
MIN_SIDE = 8  # smaller than this is not an image a classifier can say anything about
_SMALL_AXIS = 8  # an axis this short next to two long ones is read as channels


@dataclass(frozen=True)
class Layout:
    """How the axes of one array map onto frames, channels and the image plane."""

    shape: tuple[int, ...]
    channel_axis: int | None
    frame_axis: int | None
    y_axis: int
    x_axis: int

    @property
    def n_frames(self) -> int:
        return 1 if self.frame_axis is None else self.shape[self.frame_axis]

    @property
    def n_channels(self) -> int:
        return 1 if self.channel_axis is None else self.shape[self.channel_axis]

    @property
    def height(self) -> int:
        return self.shape[self.y_axis]

    @property
    def width(self) -> int:
        return self.shape[self.x_axis]

    @property
    def is_stack(self) -> bool:
        return self.frame_axis is not None

    def describe(self) -> str:
        names = []
        for ax, n in enumerate(self.shape):
            tag = {self.channel_axis: "C", self.frame_axis: "T", self.y_axis: "H", self.x_axis: "W"}[ax]
            names.append(f"{tag}={n}")
        return "(" + ", ".join(names) + ")"


@dataclass
class Plane:
    """One canonical image: ``data`` float32 (C, H, W), its frame index, source range."""

    data: np.ndarray
    frame: int = 0
    #: Largest value of the source dtype (255 for uint8); None for float input, whose
    #: values are taken as they are.  Normalisations that scale "by dtype" need it.
    value_max: float | None = None


def _normalise_axis(axis: int, ndim: int, shape: tuple[int, ...], where: str) -> int:
    if not -ndim <= axis < ndim:
        raise ImageError(
            f"{where}: channel_axis={axis} does not exist in an array of shape {shape}",
            f"pass an axis between {-ndim} and {ndim - 1}, 'auto' or 'none'",
        )
    return axis % ndim


def _layout_from(shape: tuple[int, ...], channel_axis: int | None, where: str) -> Layout:
    ndim = len(shape)
    rest = [ax for ax in range(ndim) if ax != channel_axis]
    y_axis, x_axis = rest[-2], rest[-1]
    frames = rest[:-2]
    if len(frames) > 1:
        raise ImageError(
            f"{where}: shape {shape} has {len(frames)} stack axes besides the channel axis; "
            "only one stack axis (T or Z) is supported",
            "select a single time point or z-plane first (e.g. data[t]) or reshape to (N, ...)",
        )
    return Layout(shape, channel_axis, frames[0] if frames else None, y_axis, x_axis)


def guess_layout(
    shape: Sequence[int],
    channel_axis: ChannelAxis = "auto",
    in_chans: int | None = None,
    rgb: bool | None = None,
    name: str = "image",
) -> Layout:
    """Decide which axes are channels, frames and the image plane.

    Rules for ``channel_axis="auto"`` (``rgb`` is napari's layer flag when known):

    * 2-D: greyscale ``(H, W)``.
    * 3-D: a last axis of 3 or 4 next to two longer ones is RGB(A) ``(H, W, C)``.
      Otherwise, with a model in view (``in_chans``): a first axis equal to
      ``in_chans`` is channels; for a one-channel model it is a stack.  Without a
      model, a first axis of at most 8 beside two longer ones is channels, a longer
      one is a stack.
    * 4-D: ``(T, H, W, 3|4)`` when the last axis is 3 or 4; else ``(T, C, H, W)``
      when the second axis is short (or equals ``in_chans``).
    * Anything the rules cannot settle raises an error naming the option to pass.
    """
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    if ndim < 2:
        raise ImageError(
            f"{name}: an image needs at least 2 dimensions, got shape {shape}",
            "pass a 2-D (H, W) greyscale image or a multichannel array",
        )
    if ndim > MAX_NDIM:
        raise ImageError(
            f"{name}: {ndim}-D data of shape {shape} has more dimensions than supported "
            f"(at most {MAX_NDIM}: (T, C, H, W))",
            "select one time point / z-plane / position first, e.g. data[0]",
        )
    if any(s == 0 for s in shape):
        raise ImageError(f"{name}: the array is empty (shape {shape})", "load an image with pixels in it")

    if channel_axis == "none":
        layout = _layout_from(shape, None, name)
    elif channel_axis != "auto":
        if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)):
            raise ImageError(f"{name}: channel_axis must be an int, 'auto' or 'none', got {channel_axis!r}")
        if ndim == 2:
            raise ImageError(
                f"{name}: a 2-D image {shape} has no channel axis to pick",
                "leave channel_axis as 'auto' or 'none'",
            )
        layout = _layout_from(shape, _normalise_axis(int(channel_axis), ndim, shape, name), name)
    else:
        layout = _layout_from(shape, _guess_channel_axis(shape, in_chans, rgb, name), name)

    if layout.height < MIN_SIDE or layout.width < MIN_SIDE:
        raise ImageError(
            f"{name}: the image plane is {layout.height}x{layout.width} px in {layout.describe()}; "
            f"at least {MIN_SIDE}x{MIN_SIDE} px are needed",
            "check the channel_axis (a small axis may have been read as the image plane) or use a larger image",
        )
    return layout


def _guess_channel_axis(shape: tuple[int, ...], in_chans: int | None, rgb: bool | None, name: str) -> int | None:
    ndim = len(shape)
    if ndim == 2:
        return None

    def looks_rgb() -> bool:
        return shape[-1] in (3, 4) and shape[-2] > _SMALL_AXIS and shape[-3] > _SMALL_AXIS

    if rgb is True:
        if shape[-1] not in (3, 4):
            raise ImageError(f"{name}: marked RGB but the last axis of {shape} has {shape[-1]} entries, not 3 or 4")
        return ndim - 1
    if rgb is None and looks_rgb():
        return ndim - 1

    if ndim == 3:
        first = shape[0]
        if in_chans is not None:
            if in_chans == 1:
                return None  # a one-channel model reads a 3-D array as a stack of planes
            if first == in_chans:
                return 0
            if shape[-1] == in_chans and shape[-1] <= _SMALL_AXIS:
                return 2
            raise ImageError(
                f"{name}: cannot tell whether shape {shape} holds {first} channels or a stack of "
                f"{first} planes; the model expects {in_chans} channels",
                "pass channel_axis=0 if the first axis is channels (and pick channels), "
                "or channel_axis='none' if it is a stack of greyscale planes",
            )
        if first <= _SMALL_AXIS:
            return 0
        return None

    # ndim == 4: (T, C, H, W) unless the rules above already said (T, H, W, C)
    second = shape[1]
    if second <= _SMALL_AXIS or (in_chans is not None and second == in_chans):
        return 1
    if shape[0] <= _SMALL_AXIS:
        raise ImageError(
            f"{name}: shape {shape} looks like (C, T, H, W) or (T, Z, H, W); only (T, C, H, W) "
            "and (T, H, W, C) are read automatically",
            "pass channel_axis=0 for (C, T, H, W), or select one plane first",
        )
    raise ImageError(
        f"{name}: cannot find a channel axis in the 4-D shape {shape}",
        "pass channel_axis=<axis> explicitly, or select one time point first",
    )


def value_max_of(dtype: np.dtype) -> float | None:
    """Largest value of an integer or bool dtype; None for floats."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return 1.0
    if np.issubdtype(dtype, np.integer):
        return float(np.iinfo(dtype).max)
    return None


def _check_dtype(dtype: np.dtype, name: str) -> None:
    if dtype == np.bool_ or np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating):
        return
    raise ImageError(
        f"{name}: pixel type {dtype} is not supported",
        "convert to an integer, float or bool array (complex data: take abs() first)",
    )


def get_plane(
    data: Any,
    layout: Layout,
    frame: int = 0,
    name: str = "image",
    region: tuple[slice, slice] | None = None,
    native: bool = False,
) -> np.ndarray:
    """Cut one plane (or a ``region`` = (y slice, x slice) of it) out of ``data`` as
    (C, H, W), checking it is finite.  Only that region is read, so tiles of a huge
    memory-mapped or dask image never load the whole image.

    The result is float32, or with ``native=True`` the source's integer type where
    torch has it (4x fewer bytes to move to a GPU, converted there).
    """
    index: list[Any] = [slice(None)] * len(layout.shape)
    if layout.frame_axis is not None:
        if not 0 <= frame < layout.n_frames:
            raise IndexError(f"{name}: frame {frame} does not exist (the stack has {layout.n_frames})")
        index[layout.frame_axis] = frame
    elif frame != 0:
        raise IndexError(f"{name} is a single image; frame {frame} does not exist")
    if region is not None:
        index[layout.y_axis], index[layout.x_axis] = region
    try:
        plane = np.asarray(data[tuple(index)])
    except (OSError, RuntimeError, KeyError, ValueError) as err:
        if isinstance(data, np.ndarray):
            raise
        # a lazy array (zarr, dask) reads its chunks only now: a damaged chunk surfaces here
        raise ImageError(f"{name}: cannot read these pixels ({type(err).__name__}: {str(err)[:160]})",
                         "a chunk of the store is damaged or unreadable; re-copy or re-export the image") from err
    # the frame axis is gone now; recompute where channels/y/x sit in the plane
    kept = [ax for ax in range(len(layout.shape)) if ax != layout.frame_axis]
    if layout.channel_axis is None:
        plane = plane[np.newaxis]
    else:
        plane = np.moveaxis(plane, kept.index(layout.channel_axis), 0)
    if plane.dtype.kind != "f":  # integers and bools cannot hold NaN or inf
        if native and plane.dtype in _TORCH_NATIVE:
            return np.ascontiguousarray(plane, dtype=_TORCH_NATIVE[plane.dtype])
        return np.ascontiguousarray(plane, dtype=np.float32)
    plane = np.ascontiguousarray(plane, dtype=np.float32)
    finite = np.isfinite(plane)
    if not finite.all():
        bad = int(plane.size - np.count_nonzero(finite))
        where = f"{name}, frame {frame}" if layout.is_stack else name
        if bad == plane.size:
            raise ImageError(f"{where}: every pixel is NaN or infinite", "check the acquisition or the previous processing step")
        raise ImageError(
            f"{where}: {bad} of {plane.size} pixel values are NaN or infinite",
            "replace them first, e.g. numpy.nan_to_num(data), or crop them away",
        )
    return plane


# integer types torch can take as they are (uint16/uint32 widen losslessly)
_TORCH_NATIVE = {
    np.dtype(np.bool_): np.uint8, np.dtype(np.uint8): np.uint8, np.dtype(np.int8): np.int8,
    np.dtype(np.int16): np.int16, np.dtype(np.uint16): np.int32, np.dtype(np.int32): np.int32,
    np.dtype(np.uint32): np.int64, np.dtype(np.int64): np.int64,
}


def iter_planes(
    data: Any,
    channel_axis: ChannelAxis = "auto",
    in_chans: int | None = None,
    rgb: bool | None = None,
    name: str = "image",
) -> Iterator[Plane]:
    """Yield every plane of ``data`` in canonical form, one at a time."""
    layout, value_max = inspect(data, channel_axis, in_chans, rgb, name)
    for t in range(layout.n_frames):
        yield Plane(get_plane(data, layout, t, name), t, value_max)


def inspect(
    data: Any,
    channel_axis: ChannelAxis = "auto",
    in_chans: int | None = None,
    rgb: bool | None = None,
    name: str = "image",
) -> tuple[Layout, float | None]:
    """Validate the shape and dtype of ``data`` without reading its pixels."""
    if data is None:
        raise ImageError(f"{name}: there is no image data (None)", "open or select an image first")
    if not hasattr(data, "shape") or not hasattr(data, "dtype"):
        data = np.asarray(data)
    dtype = np.dtype(data.dtype)
    _check_dtype(dtype, name)
    return guess_layout(data.shape, channel_axis, in_chans, rgb, name), value_max_of(dtype)


def to_canonical(
    data: Any,
    channel_axis: ChannelAxis = "auto",
    in_chans: int | None = None,
    rgb: bool | None = None,
    name: str = "image",
) -> np.ndarray:
    """A single image as float32 (C, H, W); a stack is an error (use iter_planes)."""
    layout, _ = inspect(data, channel_axis, in_chans, rgb, name)
    if layout.is_stack:
        raise ImageError(
            f"{name}: expected one image but got a stack {layout.describe()}",
            "select one plane, or use iter_planes() to go through the stack",
        )
    return get_plane(data, layout, 0, name)


# ----------------------------------------------------------------------------- channels

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def match_channels(
    plane: np.ndarray,
    in_chans: int,
    channels: Sequence[int] | None = None,
    name: str = "image",
) -> np.ndarray:
    """Bring a (C, H, W) plane to the model's channel count, or explain how to.

    ``channels`` picks (and orders) channels explicitly.  Without it, only lossless
    or conventional conversions happen on their own: RGBA → RGB (alpha dropped),
    greyscale → 3 equal channels for RGB models, RGB → luminance for one-channel
    models.  Any other mismatch is an error naming both counts.
    """
    c = plane.shape[0]
    if channels is not None:
        chosen = list(channels)
        bad = [i for i in chosen if not -c <= i < c]
        if bad:
            raise ChannelMismatchError(
                f"{name}: channel(s) {bad} do not exist; the image has {c} channel(s) (0..{c - 1})",
                "choose channel indices that exist",
            )
        if len(chosen) != in_chans:
            raise ChannelMismatchError(
                f"{name}: {len(chosen)} channel(s) chosen but the model expects {in_chans}",
                f"choose exactly {in_chans} channel(s)",
            )
        return np.ascontiguousarray(plane[chosen])
    if c == in_chans:
        return plane
    if c == 4 and in_chans == 3:
        return plane[:3]
    if c == 1 and in_chans == 3:
        return np.repeat(plane, 3, axis=0)
    if c in (3, 4) and in_chans == 1:
        return np.tensordot(_LUMA, plane[:3], axes=1)[np.newaxis].astype(np.float32)
    raise ChannelMismatchError(
        f"{name}: the model expects {in_chans} channel(s), the image has {c}",
        f"choose {in_chans} of its channels (channels=[...] in the API, --channels in the CLI, "
        "the channel picker in the viewer) or use a model trained on this kind of image",
    )
