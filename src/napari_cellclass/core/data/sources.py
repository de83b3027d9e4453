"""Reading a data set's *index* (which images, which labels) from its three sources.

* a folder with one sub-folder per class (``classes.txt`` in it fixes the order);
  a folder holding ``labels.csv`` is read as a manifest instead (the multi-label
  layout ``core.synth.write_dataset`` and ``core.annotations.export_dataset`` write);
* a CSV manifest ``path,labels[,mask]`` (labels joined by ``;``; paths relative to
  the CSV).  Per-class masks come from the optional ``mask`` column (a path
  relative to the CSV; empty: none) and are then training targets (painted pixel
  labels); without the column, ``masks/<image stem>.tif`` beside the CSV, when it
  exists, is ground truth for the localisation evaluation only;
* a list of in-memory items ``(image or path, labels, name[, mask])`` — what
  ``TrainingSample.as_tuple()`` gives.

A mask is (K, H, W) per-class planes or an (H, W) label image (0 = unlabelled,
k = class k); see ``dataset.per_class_mask``.  An item with a mask and no labels
is labelled with the classes painted anywhere in it, so image-level models can
learn from painted planes too (FCN training uses the mask itself as its target).

Only the index is read here; pixels are read lazily (``dataset.py``), so an
unreadable file is reported by name when it is first used.
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io.text import unsafe_cell
from ..errors import DataError
from ..io.files import is_image_entry
from ..io.images import ChannelAxis
from .dataset import Dataset, SampleStore, per_class_mask

MANIFEST_NAMES = ("labels.csv", "manifest.csv")


def load_dataset(source: Any, classes: Sequence[str] | None = None, *, channel_axis: ChannelAxis = "auto",
                 multi_label: bool | None = None, cache: bool = True) -> Dataset:
    """A :class:`Dataset` from a class-folder tree, a CSV manifest or in-memory items.

    ``classes`` fixes the class order (and must name every class the data uses);
    ``multi_label=None`` decides from the data (any item with other than one label).
    """
    if isinstance(source, Dataset):
        return source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise DataError(f"data set {path} does not exist", "check the path")
        if path.is_dir():
            manifest = next((path / n for n in MANIFEST_NAMES if (path / n).is_file()), None)
            if manifest is not None:
                return _from_csv(manifest, classes, channel_axis, multi_label, cache)
            return _from_folder(path, classes, channel_axis, multi_label, cache)
        if path.suffix.lower() == ".csv":
            return _from_csv(path, classes, channel_axis, multi_label, cache)
        raise DataError(f"{path} is neither a folder nor a CSV manifest",
                        "pass a folder with one sub-folder per class, or a CSV with columns path,labels")
    if isinstance(source, Sequence) or hasattr(source, "__iter__"):
        return _from_items(list(source), classes, channel_axis, multi_label, cache)
    raise DataError(f"cannot read a data set from {type(source).__name__}",
                    "pass a folder, a CSV manifest or a list of (image, labels, name) items")


def _read_classes_txt(folder: Path) -> list[str] | None:
    f = folder / "classes.txt"
    if not f.is_file():
        return None
    names = [line.strip() for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    return names or None


def _check_classes(classes: Sequence[str], where: str) -> list[str]:
    classes = [str(c) for c in classes]
    if len(set(classes)) != len(classes):
        raise DataError(f"{where}: class names must be unique, got {classes}")
    if not classes:
        raise DataError(f"{where}: no classes", "a data set needs at least one class")
    return classes


class DataWarning(UserWarning):
    """A data set that loads but is probably not what was meant (a class without images)."""


def _warn_empty_classes(labels: list[list[int]], order: list[str], where: str) -> None:
    counts = [0] * len(order)
    for lab in labels:
        for k in lab:
            counts[k] += 1
    empty = [c for c, n in zip(order, counts) if n == 0]
    if empty:
        warnings.warn(f"{where}: class(es) {empty} have no images (0 samples); the model still gets an output for "
                      "them, which it can never learn — add images or remove the class", DataWarning, stacklevel=3)


def _decide_multilabel(labels: list[list[int]], multi_label: bool | None, where: str, names: list[str]) -> bool:
    if multi_label is None:
        if any(len(lab) > 1 for lab in labels) or all(not lab for lab in labels):
            return True
        unlabelled = [n for n, lab in zip(names, labels) if not lab]
        if unlabelled:  # one empty cell must not silently switch the whole set to multi-label
            raise DataError(f"{where}: {len(unlabelled)} item(s) have no label (e.g. {unlabelled[0]}) while the "
                            "others have exactly one",
                            "give every image its label (or remove the rows); for multi-label training, where an "
                            "image may have no label, pass multi_label=True / --multi-label")
        return False
    if not multi_label:
        bad = [n for n, lab in zip(names, labels) if len(lab) != 1]
        if bad:
            raise DataError(f"{where}: {len(bad)} item(s) have other than one label (e.g. {bad[0]}) in a single-label data set",
                            "give every image exactly one label, or train multi-label")
    return bool(multi_label)


def _from_folder(root: Path, classes: Sequence[str] | None, channel_axis: ChannelAxis,
                 multi_label: bool | None, cache: bool) -> Dataset:
    subdirs = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    order = list(classes) if classes else (_read_classes_txt(root) or subdirs)
    order = _check_classes(order, str(root))
    unknown = [d for d in subdirs if d not in order and _has_images(root / d)]
    if unknown:
        raise DataError(f"{root}: sub-folder(s) {unknown} are not among the classes {order}",
                        "add them to classes (or classes.txt), or move them out of the data set folder")
    sources: list[Any] = []
    labels: list[list[int]] = []
    for k, c in enumerate(order):
        folder = root / c
        if not folder.is_dir():
            continue
        for f in sorted(p for p in folder.rglob("*") if is_image_entry(p)):
            sources.append(f)
            labels.append([k])
    if not sources:
        raise DataError(f"no images found in {root}",
                        "put images (TIFF, PNG, JPEG) into one sub-folder per class, or point to a CSV manifest")
    names = [str(p) for p in sources]
    _warn_empty_classes(labels, order, str(root))
    ml = _decide_multilabel(labels, multi_label, str(root), names)
    return Dataset(SampleStore(sources, names, labels, order, ml, channel_axis, cache))


def _has_images(folder: Path) -> bool:
    return any(is_image_entry(p) for p in folder.rglob("*"))


def _from_csv(path: Path, classes: Sequence[str] | None, channel_axis: ChannelAxis,
              multi_label: bool | None, cache: bool) -> Dataset:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"cannot read the manifest {path} ({err})", "it must be a UTF-8 CSV with columns path,labels") from err
    if not rows or "path" not in rows[0] or "labels" not in rows[0]:
        raise DataError(f"{path}: expected a header 'path,labels' and at least one row", "see docs: CSV manifest")
    has_column = "mask" in rows[0]
    # a labels cell a spreadsheet would run as a formula was written with a leading ' (io.text.safe_cell)
    raw_labels = [[s.strip() for s in unsafe_cell(r["labels"] or "").split(";") if s.strip()] for r in rows]
    order = list(classes) if classes else _read_classes_txt(path.parent)
    if order is None:
        order = sorted({c for lab in raw_labels for c in lab})
    order = _check_classes(order, str(path))
    lookup = {c: k for k, c in enumerate(order)}
    sources: list[Any] = []
    labels: list[list[int]] = []
    mask_paths: list[Path | None] = []
    mask_dir = path.parent / "masks"
    for line, (r, lab) in enumerate(zip(rows, raw_labels), start=2):
        unknown = [c for c in lab if c not in lookup]
        if unknown:
            raise DataError(f"{path}, line {line}: unknown class(es) {unknown}; the classes are {order}",
                            "fix the label, or add the class to classes (classes.txt)")
        if not r["path"]:
            raise DataError(f"{path}, line {line}: empty path")
        p = Path(r["path"])
        p = p if p.is_absolute() else path.parent / p
        sources.append(p)
        labels.append(sorted({lookup[c] for c in lab}))
        cell = (r.get("mask") or "").strip() if has_column else ""
        if cell:
            m = Path(cell) if Path(cell).is_absolute() else path.parent / cell
            if not m.is_file():
                raise DataError(f"{path}, line {line}: the mask {m} does not exist",
                                "fix the mask column (a path relative to the CSV), or leave it empty")
            mask_paths.append(m)
        else:
            m = mask_dir / f"{p.stem}.tif"
            mask_paths.append(m if not has_column and m.is_file() else None)
        if not labels[-1] and has_column and mask_paths[-1] is not None:
            where = f"{path}, line {line}"
            labels[-1] = _painted_classes(np.asarray(_read_tiff(mask_paths[-1], where)), len(order), where)
    names = [str(p) for p in sources]
    _warn_empty_classes(labels, order, str(path))
    ml = _decide_multilabel(labels, multi_label, str(path), names)
    masks = mask_paths if any(m is not None for m in mask_paths) else None
    # only masks named in a mask column are training targets: masks/<stem>.tif alone is
    # ground truth that the localisation evaluation scores heat maps against
    return Dataset(SampleStore(sources, names, labels, order, ml, channel_axis, cache, masks, masks_are_targets=has_column))


def _read_tiff(path: Path, where: str) -> np.ndarray:
    import tifffile

    try:
        return tifffile.imread(path)
    except (OSError, ValueError) as err:
        raise DataError(f"{where}: cannot read the mask {path} ({err})", "re-export the data set") from err


def _painted_classes(mask: np.ndarray, n_classes: int, where: str) -> list[int]:
    """Classes present anywhere in a mask of either form (its size is checked when it is used)."""
    m = per_class_mask(mask, n_classes, mask.shape[-2:], where)
    return [k for k in range(n_classes) if m[k].any()]


def _from_items(items: list[Any], classes: Sequence[str] | None, channel_axis: ChannelAxis,
                multi_label: bool | None, cache: bool) -> Dataset:
    if not items:
        raise DataError("no training items", "label some images first")
    sources: list[Any] = []
    raw: list[list[Any]] = []
    names: list[str] = []
    masks: list[Any] = []
    for i, it in enumerate(items):
        if hasattr(it, "as_tuple"):
            it = it.as_tuple()
        try:
            img, lab = it[0], it[1]
            name = str(it[2]) if len(it) > 2 else f"item {i}"
        except (TypeError, IndexError) as err:
            raise DataError(f"training item {i} is not an (image, labels, name) tuple", "see load_dataset") from err
        if isinstance(lab, (int, np.integer, str)):
            lab = [lab]
        sources.append(img if isinstance(img, (str, os.PathLike)) else np.asarray(img) if not hasattr(img, "shape") else img)
        raw.append(list(lab))
        names.append(name)
        masks.append(it[3] if len(it) > 3 else None)
    uses_names = any(isinstance(v, str) for lab in raw for v in lab)
    if classes:
        order = _check_classes(classes, "training items")
    elif uses_names:
        order = _check_classes(sorted({str(v) for lab in raw for v in lab}), "training items")
    else:
        raise DataError("training items carry class indices but no class names were given", "pass classes=[...]")
    lookup = {c: k for k, c in enumerate(order)}
    labels: list[list[int]] = []
    for name, lab in zip(names, raw):
        idx = []
        for v in lab:
            if isinstance(v, str):
                if v not in lookup:
                    raise DataError(f"{name}: unknown class {v!r}; the classes are {order}")
                idx.append(lookup[v])
            else:
                if not 0 <= int(v) < len(order):
                    raise DataError(f"{name}: class index {v} out of range for {len(order)} classes")
                idx.append(int(v))
        labels.append(sorted(set(idx)))
    for r, m in enumerate(masks):
        if m is not None and not labels[r]:
            labels[r] = _painted_classes(np.asarray(m), len(order), names[r])
    ml = _decide_multilabel(labels, multi_label, "training items", names)
    has = any(m is not None for m in masks)
    return Dataset(SampleStore(sources, names, labels, order, ml, channel_axis, cache, masks if has else None))
