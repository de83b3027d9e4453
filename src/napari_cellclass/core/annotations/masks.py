"""Pixel labels: one label mask per image plane, stored as a compressed TIFF.

A mask holds 0 for "not labelled" and ``v >= 1`` elsewhere; the annotation file
maps each value to a class *name* (``values``), so renaming, reordering or
removing classes never requires rewriting masks.  A plane's strokes alternate
between ``<annotation stem>.masks/<image>-f<frame>-a.tif`` and ``-b.tif`` (see
:mod:`.pixels`): a stroke overwrites, atomically, the file the annotation file does
not point at, so it never points at a half-written mask.  (Files of older versions,
``<image>-f<frame>-<item id>.tif``, one per stroke, are read as they are.)
Files no longer referenced are deleted later (:func:`collect_garbage`), and only
once they are a day old: another viewer on the same file may have painted a mask
its file does not list yet, or may hold it in its undo history.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..atomicfile import write_atomic
from ..errors import DataError

#: masks nothing refers to are deleted only when older than this (seconds)
GARBAGE_AGE_S = 24 * 3600


def mask_dtype(n_classes: int) -> np.dtype:
    return np.dtype(np.uint8 if n_classes < 256 else np.uint16)


def check_mask(mask: np.ndarray, hw: tuple[int, int], n_classes: int, where: str) -> np.ndarray:
    """Validate a painted label mask (values 0..n_classes) and return it as an int array."""
    m = np.asarray(mask)
    if m.shape != tuple(hw):
        raise DataError(f"{where}: the label mask has shape {m.shape}, the image plane is {hw[0]}x{hw[1]}",
                        "paint in a Labels layer of the same size as the image plane")
    if m.dtype == np.bool_:
        m = m.astype(np.uint8)
    if m.dtype.kind not in "iu":
        raise DataError(f"{where}: a label mask must hold integers, got {m.dtype}", "paint in a napari Labels layer")
    if m.size and (int(m.min()) < 0 or int(m.max()) > n_classes):
        raise DataError(
            f"{where}: label values must lie in 0..{n_classes} (0 = unlabelled, k = class k), got {int(m.min())}..{int(m.max())}",
            "paint only with the class labels of the list (or add the missing class first)",
        )
    return m


def write_mask(path: Path, mask: np.ndarray, n_classes: int) -> None:
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.ascontiguousarray(mask, dtype=mask_dtype(n_classes)), compression="zlib",
                     photometric="minisblack")
    write_atomic(path, buf.getvalue())


def read_mask(path: Path) -> np.ndarray:
    import tifffile

    if not path.is_file():
        raise DataError(f"the pixel-label mask {path} is missing",
                        "restore it from a backup, or delete this pixel annotation and paint it again")
    return tifffile.imread(path)


def remap(stored: np.ndarray, values: Sequence[tuple[int, str]], class_names: Sequence[str]) -> np.ndarray:
    """Stored mask values → current class index + 1 (0 where the class is gone)."""
    lut = np.zeros(int(max([0, *(v for v, _ in values), int(stored.max()) if stored.size else 0])) + 1, dtype=np.int64)
    index = {c: i + 1 for i, c in enumerate(class_names)}
    for v, c in values:
        lut[v] = index.get(c, 0)
    return lut[stored].astype(mask_dtype(len(class_names)))


def collect_garbage(folder: Path, referenced: Iterable[str], root: Path, *, min_age_s: float = 0.0) -> list[Path]:
    """Delete mask files in ``folder`` that nothing refers to and that were last
    modified more than ``min_age_s`` seconds ago; return what was deleted."""
    import time

    if not folder.is_dir():
        return []
    keep = {(root / r).resolve() for r in referenced}
    cutoff = time.time() - min_age_s
    gone = []
    for f in folder.glob("*.tif"):
        if f.resolve() not in keep and _mtime(f) < cutoff:
            try:
                f.unlink()
                gone.append(f)
            except OSError:
                pass  # read-only or in use: harmless, tried again next time
    return gone


def _mtime(f: Path) -> float:
    try:
        return f.stat().st_mtime
    except OSError:
        return float("inf")  # vanished or unreadable: nothing to delete
