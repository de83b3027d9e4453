"""Annotations → training samples: in memory for fine-tuning, or a data set folder.

One sample per image-level label (the whole plane), per region (its crop), and
per pixel-labelled plane (the whole plane with its mask; when the plane also has
an image-level label, that label is the sample's label and the mask rides along).
Pixels come out as canonical ``(C, H, W)`` in the source dtype, so uint8 vs uint16
ranges keep their meaning; with one channel pass ``channel_axis=0`` to the data set
reader, since a ``(1, H, W)`` array is otherwise ambiguous for multi-channel models.

On disk (what ``cellclass train`` reads):

* single-label, no pixel labels: ``<out>/<class>/<name>.tif``;
* multi-label, or any pixel labels: ``<out>/images/<name>.tif`` and
  ``<out>/labels.csv`` (``path,labels,mask``; labels joined by ``;``; paths relative
  to the CSV), ``<out>/classes.txt`` (class order), and for pixel-labelled planes
  ``<out>/masks/<name>.tif``: (K, H, W) uint8, 1 where the pixel has class k, named
  in the row's ``mask`` column (empty for planes without pixel labels).  Training
  an FCN on the folder uses these masks as the samples' dense targets.

TIFFs are written as ``(C, H, W)`` with axes ``CYX`` (``YX`` for one channel) and
RGB(A) images as interleaved RGB, so ``read_image`` finds the channels again.
The folder is built under a temporary name and renamed at the end: an interrupted
export never leaves a half data set under ``<out>``.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io.text import safe_cell
from ..errors import DataError
from ..io.crops import crop_item, read_region
from .imagerefs import safe_stem
from .schema import REGION_KINDS, Item


@dataclass
class TrainingSample:
    """One labelled training image made from annotations."""

    image: np.ndarray  # (C, H, W), source dtype
    labels: list[int]  # class indices into the store's class order
    name: str
    image_key: str
    frame: int
    item_ids: tuple[int, ...]
    #: (H, W) label mask (0 = unlabelled, k = class k - 1) for pixel-labelled planes
    mask: np.ndarray | None = None
    rgb: bool = field(default=False, repr=False)

    def as_tuple(self) -> tuple[np.ndarray, list[int], str, np.ndarray | None]:
        """``(image, labels, name, mask)``: the in-memory item ``load_dataset`` takes;
        ``mask`` is the (H, W) label mask or None, the dense target of FCN training."""
        return self.image, list(self.labels), self.name, self.mask

    def target_masks(self, n_classes: int) -> np.ndarray:
        """(K, H, W) bool per-class targets from the label mask (FCN training)."""
        if self.mask is None:
            raise DataError(f"{self.name} has no pixel labels", "paint it in the Labels layer first")
        return self.mask[None, :, :] == np.arange(1, n_classes + 1)[:, None, None]


KINDS_ALL = ("image", *REGION_KINDS, "pixels")


def _sample_name(store: Any, it: Item) -> str:
    name = it.image + (f"_f{it.frame}" if store.layout(it.image).is_stack else "")
    return safe_stem(name + ("" if it.kind in ("image", "pixels") else f"_{it.kind}{it.id}"))


def training_samples(store: Any, kinds: Sequence[str] = KINDS_ALL, *, pad_mode: str = "reflect",
                     mask_outside: bool = False) -> list[TrainingSample]:
    """Every annotation of the chosen ``kinds`` as a :class:`TrainingSample`."""
    unknown = set(kinds) - set(KINDS_ALL)
    if unknown:
        raise DataError(f"unknown annotation kind(s) {sorted(unknown)}", f"use {', '.join(KINDS_ALL)}")
    index = {c: i for i, c in enumerate(store.class_names)}
    chosen = [it for it in store.items if it.kind in kinds]
    _check_images_present(store, {it.image for it in chosen})
    order = {k: i for i, k in enumerate(dict.fromkeys(it.image for it in chosen))}
    chosen.sort(key=lambda it: (order[it.image], it.frame, it.id))  # read each image once, in a row
    planes: dict[tuple[str, int], TrainingSample] = {}
    out: list[TrainingSample] = []
    taken: set[str] = set()
    for it in chosen:
        data, layout = store.pixels(it.image), store.layout(it.image)
        rgb = _is_rgb(layout, data)
        labels = sorted(index[c] for c in it.labels)
        name = _sample_name(store, it)
        if name in taken and (it.kind in REGION_KINDS or (it.image, it.frame) not in planes):
            name = f"{name}_{it.id}"
        taken.add(name)
        if it.kind in REGION_KINDS:
            crop = crop_item(data, layout, it, pad_mode=pad_mode, mask_outside=mask_outside, name=store.image(it.image).name)
            out.append(TrainingSample(crop, labels, name, it.image, it.frame, (it.id,), rgb=rgb))
            continue
        key = (it.image, it.frame)
        sample = planes.get(key)
        if sample is None:
            plane = read_region(data, layout, it.frame, slice(None), slice(None), store.image(it.image).name)
            sample = TrainingSample(plane, labels, name, it.image, it.frame, (), rgb=rgb)
            planes[key] = sample
            out.append(sample)
        sample.item_ids = (*sample.item_ids, it.id)
        if it.kind == "pixels":
            sample.mask = store.pixel_labels(it.image, it.frame)
            if len(sample.item_ids) == 1:
                sample.labels = labels
        else:
            sample.labels = labels  # an image-level label wins over the classes painted
    return out


def _is_rgb(layout: Any, data: Any) -> bool:
    return (layout.channel_axis is not None and layout.channel_axis == len(layout.shape) - 1
            and layout.n_channels in (3, 4) and np.dtype(data.dtype) in (np.uint8, np.uint16))


def _check_images_present(store: Any, keys: set[str]) -> None:
    missing = []
    for k in sorted(keys):
        try:
            store.pixels(k)
        except Exception as err:  # noqa: BLE001 - every reason is reported, named per image
            missing.append(str(err))
    if missing:
        raise DataError(f"{len(missing)} annotated image(s) cannot be read: " + "; ".join(missing[:3]),
                        "put the files back (or attach the open layers), or delete their annotations")


def _tiff_bytes(arr: np.ndarray, rgb: bool) -> bytes:
    import tifffile

    buf = io.BytesIO()
    if rgb:
        tifffile.imwrite(buf, np.moveaxis(arr, 0, -1), photometric="rgb", compression="zlib")
    elif arr.shape[0] == 1:
        tifffile.imwrite(buf, arr[0], photometric="minisblack", compression="zlib", metadata={"axes": "YX"})
    else:
        tifffile.imwrite(buf, arr, photometric="minisblack", compression="zlib", metadata={"axes": "CYX"})
    return buf.getvalue()


def _inside(root: Path, rel: str) -> Path:
    """``root / rel``, refused unless it resolves to a file directly below a folder of
    ``root`` — names come from a file a user can edit by hand."""
    path = (root / rel).resolve()
    if path.parent.parent != root.resolve() and path.parent != root.resolve():
        raise DataError(f"the export path {rel!r} would lie outside the export folder",
                        "rename the class or image so that it holds no path separators or '..'")
    return path


@dataclass(frozen=True)
class ExportReport:
    folder: Path
    layout: str  # "folders" | "csv"
    n_samples: int
    counts: dict[str, int]
    manifest: Path | None
    n_masks: int


def export_dataset(store: Any, out: str | os.PathLike, kinds: Sequence[str] = KINDS_ALL, *, layout: str = "auto",
                   pad_mode: str = "reflect", mask_outside: bool = False) -> ExportReport:
    """Write the annotations as a data set ``cellclass train`` reads (see module doc).

    ``layout="auto"`` picks class folders for single-label sets without pixel
    labels, else the CSV manifest; ``"folders"`` / ``"csv"`` force one.  ``out``
    must not exist or be empty.
    """
    if layout not in ("auto", "folders", "csv"):
        raise DataError(f"unknown export layout {layout!r}", "use auto, folders or csv")
    target = Path(out)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DataError(f"{target}: exists and is not an empty folder", "export into a new or empty folder")
    samples = training_samples(store, kinds, pad_mode=pad_mode, mask_outside=mask_outside)
    if not samples:
        raise DataError("there are no annotations to export", "label some images or regions first")
    classes = store.class_names
    multi = store.multilabel or any(len(s.labels) != 1 for s in samples)
    has_masks = any(s.mask is not None for s in samples)
    use_csv = layout == "csv" or (layout == "auto" and (multi or has_masks))
    if layout == "folders" and multi:
        raise DataError("multi-label annotations cannot be written as class folders", "export with layout='csv'")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        rows, n_masks = [], 0
        for s in samples:
            sub = "images" if use_csv else classes[s.labels[0]]  # folders: no pixel labels, so no mask
            rel = f"{sub}/{s.name}.tif"
            _inside(tmp, rel).parent.mkdir(exist_ok=True)
            _inside(tmp, rel).write_bytes(_tiff_bytes(s.image, s.rgb))
            mask_rel = ""
            if s.mask is not None and use_csv:
                mask_rel = f"masks/{s.name}.tif"
                (tmp / "masks").mkdir(exist_ok=True)
                _inside(tmp, mask_rel).write_bytes(_tiff_bytes(s.target_masks(len(classes)).astype(np.uint8), False))
                n_masks += 1
            rows.append((rel, safe_cell(";".join(classes[i] for i in s.labels)), mask_rel))
        manifest = None
        if use_csv:
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(["path", "labels", "mask"])
            w.writerows(rows)
            (tmp / "labels.csv").write_text(buf.getvalue())
            (tmp / "classes.txt").write_text("\n".join(classes) + "\n")
            manifest = target / "labels.csv"
        if target.exists():
            target.rmdir()
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    counts = {c: sum(i in s.labels for s in samples) for i, c in enumerate(classes)}
    return ExportReport(target, "csv" if use_csv else "folders", len(samples), counts, manifest, n_masks)
