"""Which image an annotation belongs to, and whether it is still the same image.

File images are recorded by path (relative to the annotation file's folder when
inside it, so a folder moved as a whole keeps working) with their size, mtime and a
content hash of the file's bytes.  Images that exist only in memory (sample data,
the result of a processing step) are written once as TIFF into ``images/`` beside
the annotation file, so the annotations stay usable after the viewer closes.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageError
from ..io.images import ChannelAxis, Layout, guess_layout
from .schema import ImageRecord

_CHUNK = 1 << 22


def hash_file(path: Path) -> str:
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return "blake2b:" + h.hexdigest()


def hash_array(data: Any) -> str:
    """Hash of dtype, shape and pixels, read one leading index at a time (dask-safe)."""
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{np.dtype(data.dtype).str}{tuple(data.shape)}".encode())
    parts = range(data.shape[0]) if len(data.shape) > 2 else [slice(None)]
    for i in parts:
        block = np.ascontiguousarray(np.asarray(data[i]))
        h.update(memoryview(block).cast("B"))
    return "blake2b:" + h.hexdigest()


def record_path(path: Path, folder: Path) -> str:
    """How a file is written into the annotation file: relative when inside ``folder``."""
    path = Path(os.path.abspath(path))
    try:
        return path.relative_to(Path(os.path.abspath(folder))).as_posix()
    except ValueError:
        return str(path)


def absolute(rec: ImageRecord, folder: Path) -> Path:
    p = Path(rec.path)
    return p if p.is_absolute() else folder / p


def safe_stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "image"
    return stem[:80]


def unique_key(name: str, taken: set[str]) -> str:
    base = safe_stem(Path(name).stem if Path(name).suffix.lower() in (".tif", ".tiff", ".png", ".jpg", ".jpeg") else name)
    key, n = base, 2
    while key in taken:
        key, n = f"{base}-{n}", n + 1
    return key


def resolve_channel_axis(shape: tuple[int, ...], channel_axis: ChannelAxis, rgb: bool | None, name: str) -> int | None:
    """Settle the layout once, at registration, so later crops never re-guess it."""
    return guess_layout(shape, channel_axis, rgb=rgb, name=name).channel_axis


def layout_of(rec: ImageRecord) -> Layout:
    return guess_layout(rec.shape, "none" if rec.channel_axis is None else rec.channel_axis, name=rec.name)


def write_tiff(path: Path, data: np.ndarray, rgb: bool) -> None:
    """Atomic TIFF of an in-memory image, readable back to the same shape."""
    import tifffile

    from ..atomicfile import write_atomic

    buf = io.BytesIO()
    tifffile.imwrite(buf, np.asarray(data), photometric="rgb" if rgb else "minisblack", compression="zlib")
    write_atomic(path, buf.getvalue())


def open_pixels(path: Path, rec: ImageRecord) -> Any:
    """An array of the file's pixels (memory-mapped when the TIFF allows it)."""
    import tifffile

    if not path.is_file():
        raise ImageError(f"{rec.name}: its file {path} is missing",
                         "put the file back where it was, or remove this image's annotations")
    data: Any = None
    if path.suffix.lower() in (".tif", ".tiff"):
        try:
            data = tifffile.memmap(path, mode="r")
        except (ValueError, OSError, tifffile.TiffFileError):
            data = None  # compressed or tiled: read it whole
    if data is None:
        from ..io.files import read_image

        data = read_image(path).data
    if tuple(data.shape) != tuple(rec.shape):
        raise ImageError(
            f"{rec.name}: the file {path} now holds an array of shape {tuple(data.shape)}, "
            f"the annotations were made on shape {tuple(rec.shape)}",
            "the file was replaced; restore the original, or open it in the viewer and attach its layer",
        )
    return data


@dataclass(frozen=True)
class ImageProblem:
    """An annotated image that is missing or has changed since it was annotated."""

    key: str
    kind: str  # "missing" | "changed"
    message: str


def check_record(rec: ImageRecord, folder: Path) -> tuple[ImageProblem | None, ImageRecord]:
    """Compare a file image with its record; cheap (stat) unless size/mtime moved."""
    if rec.origin == "memory" and not absolute(rec, folder).is_file():
        return ImageProblem(rec.key, "missing", f"{rec.name}: its saved copy {absolute(rec, folder)} is missing"), rec
    path = absolute(rec, folder)
    try:
        st = path.stat()
    except OSError:
        return ImageProblem(rec.key, "missing", f"{rec.name}: the image file {path} is missing; its annotations "
                            "cannot be exported until it is back"), rec
    if st.st_size == rec.size and st.st_mtime_ns == rec.mtime_ns:
        return None, rec
    digest = hash_file(path)
    if digest == rec.hash:
        from dataclasses import replace

        return None, replace(rec, size=st.st_size, mtime_ns=st.st_mtime_ns)  # touched, not changed
    return ImageProblem(rec.key, "changed", f"{rec.name}: the file {path} changed after it was annotated; "
                        "its annotations may no longer fit the pixels — check them, then accept the change "
                        "(accept_image_change) or restore the original file"), rec
