"""Reading image files (TIFF of any channel count, PNG, JPEG) and finding them in folders.

TIFF goes through tifffile, which also tells us the axes it found (``CYX``,
``TYX``, ``YXS`` …), so a channel axis written into the file wins over guessing.
PNG/JPEG go through scikit-image (Pillow).  Every failure names the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageError
from .budget import check_pixels, max_pixels
from .images import ChannelAxis
from .multiscale import is_zarr_path

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass
class ImageFile:
    """Pixels of one file plus what the file itself says about its axes."""

    path: Path
    data: np.ndarray
    channel_axis: ChannelAxis = "auto"
    rgb: bool | None = None
    pyramid: Any = None  # a multiscale.Pyramid for OME-Zarr; ``data`` is then its level 0, lazily


def _read_omezarr(p: Path | str) -> ImageFile:
    from .omezarr import read_omezarr

    pyr = read_omezarr(p)
    return ImageFile(Path(p), pyr.levels[0].data, pyr.channel_axis, pyr.rgb, pyr)


def tiff_axes_hint(axes: str, ndim: int) -> tuple[ChannelAxis, bool | None]:
    axes = axes.upper()
    if len(axes) != ndim:
        return "auto", None
    if "S" in axes and axes.endswith("S"):  # samples per pixel: RGB(A) stored interleaved
        return axes.index("S"), True
    if "C" in axes:
        return axes.index("C"), False
    if set(axes) <= set("TZYX") and "Y" in axes:
        return "none", False  # the file names its axes, and none of them is channels
    # Q/I ("unknown", "image sequence") carry no meaning: let the shape rules decide
    return "auto", None


def read_image(path: str | os.PathLike) -> ImageFile:
    """Read one image file; raise :class:`ImageError` naming the file on any failure."""
    if is_zarr_path(path):  # OME-Zarr: a folder (or URL), read lazily
        return _read_omezarr(path)
    p = Path(path)
    if not p.exists():
        raise ImageError(f"{p}: no such file", "check the path")
    if p.is_dir():
        raise ImageError(f"{p}: is a folder, not an image file", "pass the files inside it, or the folder to a command that walks folders")
    if p.stat().st_size == 0:
        raise ImageError(f"{p}: the file is empty (0 bytes)", "re-export or re-copy the image")
    suffix = p.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ImageError(f"{p}: unsupported file type '{suffix}'", f"use one of {', '.join(IMAGE_SUFFIXES)}")
    try:
        if suffix in TIFF_SUFFIXES:
            import tifffile

            with tifffile.TiffFile(p) as tif:
                series = tif.series[0]
                check_pixels(series.shape, str(p))  # before decoding: the header may lie hugely
                data = series.asarray()
                axis, rgb = tiff_axes_hint(series.axes, data.ndim)
            return ImageFile(p, data, axis, rgb)
        from PIL import Image, UnidentifiedImageError  # Pillow comes with scikit-image

        try:
            with Image.open(p) as im:
                check_pixels((*im.size[::-1], len(im.getbands())), str(p))
                im.load()
                if im.mode in ("P", "PA", "LA", "CMYK", "YCbCr", "HSV"):
                    im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
                data = np.asarray(im)
        except Image.DecompressionBombError:
            # Pillow's own limit (2x Image.MAX_IMAGE_PIXELS) hit while opening the header
            raise ImageError(f"{p}: declares more pixels than Pillow opens (a possible decompression bomb)",
                             f"crop or tile it; files over the pixel budget ({max_pixels():,}, CELLCLASS_MAX_PIXELS) are never decoded") from None
        except UnidentifiedImageError as err:
            raise ImageError(f"{p}: not a readable {suffix[1:].upper()} image ({err.__class__.__name__})", "the file is probably of another type or damaged; re-export it") from err
        rgb = data.ndim == 3 and data.shape[-1] in (3, 4)
        return ImageFile(p, data, -1 if rgb else "none", rgb)
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, IndexError, KeyError, TypeError) as err:
        # Pillow raises OSError("image file is truncated"), tifffile ValueError/TiffFileError …
        raise ImageError(
            f"{p}: cannot read the image ({err.__class__.__name__}: {str(err)[:200]})",
            "the file is damaged or truncated; re-export or re-copy it",
        ) from err


def find_images(paths: Iterable[str | os.PathLike], recursive: bool = True) -> list[Path]:
    """Expand files and folders into a sorted, de-duplicated list of image files."""
    found: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        if "://" in os.fspath(raw):
            raise _url_among_paths(os.fspath(raw))
        p = Path(raw)
        if p.is_dir() and not is_zarr_path(p):
            walker: Iterator[Path] = p.rglob("*") if recursive else p.glob("*")
            candidates = sorted(q for q in walker if is_image_entry(q))
        elif p.exists():
            candidates = [p]
        else:
            raise ImageError(f"{p}: no such file or folder", "check the path")
        for q in candidates:
            key = q.resolve()
            if key not in seen:
                seen.add(key)
                found.append(q)
    return found


def _url_among_paths(url: str) -> ImageError:
    """A URL where files and folders are walked (Path would mangle it into a missing
    local path): the store's own message when it cannot be reached (offline), else that
    these commands read local paths."""
    if is_zarr_path(url):
        from .omezarr import read_omezarr

        read_omezarr(url)  # raises "cannot read the remote store … (are you offline?)" when unreachable
    return ImageError(f"{url}: a URL; commands that walk files and folders read local paths only",
                      "copy the store to disk (an OME-Zarr store is a folder) and pass that, "
                      "or pass the URL to predict()/predict_map()/explain() from Python")


def is_image_entry(q: Path) -> bool:
    """An image file, or an OME-Zarr folder (never a file inside one)."""
    if any(part.lower().endswith(".zarr") for part in q.parent.parts):
        return False
    if q.is_dir():
        return q.name.lower().endswith(".zarr")
    return q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES
