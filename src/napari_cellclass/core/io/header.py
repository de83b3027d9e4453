"""Shape, dtype and axis hints of an image file without decoding its pixels.

Mirrors :func:`.imagefiles.read_image`: the shape given here is the shape of the
array ``read_image`` returns (palette PNGs become RGB/RGBA, and so on), so a folder
of hundreds of files can be laid out as one stack before any pixel is read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ImageError
from .budget import check_pixels
from .files import TIFF_SUFFIXES, IMAGE_SUFFIXES, tiff_axes_hint
from .images import ChannelAxis

# Pillow mode -> (channels, dtype) of np.asarray(image) after read_image's conversions
_PIL_MODES: dict[str, tuple[int, str]] = {
    "1": (1, "bool"), "L": (1, "uint8"), "I;16": (1, "uint16"), "I;16B": (1, "uint16"),
    "I;16L": (1, "uint16"), "I": (1, "int32"), "F": (1, "float32"),
    "RGB": (3, "uint8"), "RGBA": (4, "uint8"), "CMYK": (3, "uint8"), "YCbCr": (3, "uint8"), "HSV": (3, "uint8"),
    "LA": (4, "uint8"), "PA": (4, "uint8"),
}


@dataclass(frozen=True)
class ImageHeader:
    path: Path
    shape: tuple[int, ...]
    dtype: np.dtype
    channel_axis: ChannelAxis = "auto"
    rgb: bool | None = None


def read_header(path: str | os.PathLike) -> ImageHeader:
    """What :func:`read_image` would return, minus the pixels; errors name the file."""
    p = Path(path)
    suffix = p.suffix.lower()
    if not p.is_file():
        raise ImageError(f"{p}: no such file", "check the path")
    if suffix not in IMAGE_SUFFIXES:
        raise ImageError(f"{p}: unsupported file type '{suffix}'", f"use one of {', '.join(IMAGE_SUFFIXES)}")
    try:
        if suffix in TIFF_SUFFIXES:
            import tifffile

            with tifffile.TiffFile(p) as tif:
                series = tif.series[0]
                shape = tuple(int(s) for s in series.shape)
                check_pixels(shape, str(p))
                axis, rgb = tiff_axes_hint(series.axes, len(shape))
                return ImageHeader(p, shape, np.dtype(series.dtype), axis, rgb)
        from PIL import Image

        with Image.open(p) as im:
            mode = im.mode
            if mode == "P":
                mode = "RGBA" if "transparency" in im.info else "RGB"
            if mode not in _PIL_MODES:
                raise ImageError(f"{p}: unsupported {suffix[1:].upper()} pixel mode {im.mode!r}", "re-export it as greyscale or RGB")
            chans, dtype = _PIL_MODES[mode]
            w, h = im.size
            check_pixels((h, w, chans), str(p))
    except ImageError:
        raise
    except Exception as err:  # tifffile / Pillow raise a zoo of types for damaged files
        raise ImageError(f"{p}: cannot read the image header ({err.__class__.__name__}: {str(err)[:200]})",
                         "the file is damaged or truncated; re-export or re-copy it") from err
    if chans == 1:
        return ImageHeader(p, (h, w), np.dtype(dtype), "none", False)
    return ImageHeader(p, (h, w, chans), np.dtype(dtype), -1, True)
