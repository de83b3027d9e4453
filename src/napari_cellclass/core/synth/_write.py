"""Writing synthetic sets to disk in the layouts ``core.data`` reads.

Every file is written to a temporary name beside its target and moved into place
with ``os.replace``, so an interrupted run never leaves a half-written image that
a later training run would choke on.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from . import TaskInfo


def _atomic(path: Path, write: Callable[[str], None]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_png(path: Path, arr: np.ndarray) -> None:
    from PIL import Image  # Pillow ships with scikit-image

    _atomic(path, lambda tmp: Image.fromarray(arr).save(tmp, format="PNG"))


def write_tiff(path: Path, arr: np.ndarray, axes: str) -> None:
    import tifffile

    _atomic(path, lambda tmp: tifffile.imwrite(tmp, arr, metadata={"axes": axes}))


def write_text(path: Path, text: str) -> None:
    def w(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            fh.write(text)

    _atomic(path, w)


def write_samples(info: TaskInfo, outdir: Path, classes: list[str],
                  samples: Iterable[tuple[np.ndarray, list[int], np.ndarray | None]], n: int,
                  progress: Callable[[int, int], None] | None = None) -> Path:
    outdir.mkdir(parents=True, exist_ok=True)
    channel_first = info.layout == "CYX"
    ext = ".tif" if channel_first else ".png"
    rows: list[tuple[str, str]] = []
    if info.multilabel:
        (outdir / "images").mkdir(exist_ok=True)
        (outdir / "masks").mkdir(exist_ok=True)
    else:
        for c in classes:
            (outdir / c).mkdir(exist_ok=True)
    for i, (img, lab, masks) in enumerate(samples):
        stem = f"{info.name}_{i:05d}"
        if info.multilabel:
            write_tiff(outdir / "images" / f"{stem}{ext}", img, "CYX")
            write_tiff(outdir / "masks" / f"{stem}.tif", masks.astype(np.uint8), "CYX")
            rows.append((f"images/{stem}{ext}", ";".join(classes[j] for j in lab)))
        else:
            target = outdir / classes[lab[0]] / f"{stem}{ext}"
            write_tiff(target, img, "CYX") if channel_first else write_png(target, img)
        if progress is not None:
            progress(i + 1, n)
    if info.multilabel:
        buf = io.StringIO()
        wr = csv.writer(buf, lineterminator="\n")
        wr.writerow(["path", "labels"])
        wr.writerows(rows)
        write_text(outdir / "labels.csv", buf.getvalue())
    write_text(outdir / "classes.txt", "".join(c + "\n" for c in classes))
    return outdir
