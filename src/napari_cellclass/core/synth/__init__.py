"""Realistic, deterministic synthetic microscopy for tests, demos and benchmarks.

One module per modality, one named task per source study (RECIPES.md)::

    >>> from napari_cellclass.core.synth import TASKS, generate, write_dataset
    >>> s = generate("actin", 30, seed=1)          # SynthSet: images, labels, classes ...
    >>> write_dataset("protein", "data/protein", 200)

Image ``i`` of a task is a pure function of ``(task, seed, i, size, classes)``:
it does not depend on ``n``, so a larger set extends a smaller one, and the same
call gives bit-identical arrays.  Classes differ in morphology only; brightness,
contrast, illumination, colour cast and cell density are drawn per image from one
distribution shared by all classes (tests hold the generators to that).

Numpy/scipy/scikit-image only: no torch, no Qt.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import actin, brightfield, cell_line, protein, senescence
from ._write import write_samples


@dataclass(frozen=True)
class TaskInfo:
    """What a synthetic task produces.

    ``layout`` names the array axes of one image (``YX``, ``YXS`` = RGB last,
    ``CYX`` = channel first) and ``dtype`` its numpy dtype; ``classes`` is the
    default class list and ``available_classes`` every name ``generate`` accepts.
    """

    name: str
    classes: list[str]
    multilabel: bool
    channel_names: list[str]
    default_size: tuple[int, int]
    modality: str
    study: str
    layout: str
    dtype: str
    available_classes: list[str] = field(default_factory=list)


@dataclass
class SynthSet:
    """A generated data set; ``labels[i]`` lists class indices of ``images[i]``."""

    images: list[np.ndarray]
    labels: list[list[int]]
    classes: list[str]
    multilabel: bool
    channel_names: list[str]
    masks: list[np.ndarray] | None = None  # (K, H, W) bool per image, protein only
    task: str = ""

    def __len__(self) -> int:
        return len(self.images)


TASKS: dict[str, TaskInfo] = {
    "cell-line": TaskInfo(
        "cell-line", list(cell_line.PARENTAL), False, ["red", "green", "blue"], cell_line.DEFAULT_SIZE,
        "phase-contrast cell culture, RGB", "1: cell-line authentication (Mzurikwao et al. 2020)",
        "YXS", "uint8", list(cell_line.CLASSES)),
    "brightfield": TaskInfo(
        "brightfield", list(brightfield.CLASSES), False, ["brightfield"], brightfield.DEFAULT_SIZE,
        "brightfield 400x tiles, greyscale", "2: ScaffoldNet brightfield (Akogo & Palmer 2019)",
        "YX", "uint8", list(brightfield.CLASSES)),
    "actin": TaskInfo(
        "actin", list(actin.CLASSES), False, ["red", "green", "blue"], actin.DEFAULT_SIZE,
        "confocal actin (phalloidin) fluorescence exported as RGB, signal in green",
        "3: actin fluorescence breast-cancer lines (Kakumani & Padma Sree)",
        "YXS", "uint8", list(actin.CLASSES)),
    "senescence": TaskInfo(
        "senescence", list(senescence.CLASSES), False, list(senescence.CHANNELS), senescence.DEFAULT_SIZE,
        "non-linear optical microscopy: SRS lipids, TPEF autofluorescence, transmission",
        "4: senescent vs proliferating, NLO (Sorrentino et al. 2023)",
        "CYX", "uint16", list(senescence.CLASSES)),
    "protein": TaskInfo(
        "protein", list(protein.CLASSES), True, list(protein.CHANNELS), protein.DEFAULT_SIZE,
        "4-channel confocal immunofluorescence: protein, nucleus, microtubules, ER",
        "5: protein subcellular localisation, CNN vs FCN (Liimatainen et al. 2021)",
        "CYX", "uint8", list(protein.CLASSES)),
}

_RENDER: dict[str, Callable] = {
    "cell-line": cell_line.render,
    "brightfield": brightfield.render,
    "actin": actin.render,
    "senescence": senescence.render,
}

MIN_SIDE = 32  # below this the cells are a few pixels and morphology is gone


def _info(task: str) -> TaskInfo:
    try:
        return TASKS[task]
    except KeyError:
        raise ValueError(f"unknown synthetic task {task!r}; choose one of {', '.join(TASKS)}") from None


def _check(task: str, size: tuple[int, int] | None, classes: list[str] | None, n: int = 0,
           seed: int = 0) -> tuple[TaskInfo, tuple[int, int], list[str]]:
    info = _info(task)
    if int(n) < 0 or int(seed) < 0:
        raise ValueError(f"n and seed must be >= 0, got n={n}, seed={seed}")
    if size is None:
        size = info.default_size
    if len(size) != 2 or min(int(size[0]), int(size[1])) < MIN_SIDE:
        raise ValueError(f"size must be (H, W) with both sides >= {MIN_SIDE}, got {size!r}")
    size = (int(size[0]), int(size[1]))
    if classes is None:
        classes = list(info.classes)
    classes = list(classes)
    unknown = [c for c in classes if c not in info.available_classes]
    if unknown:
        raise ValueError(f"{task}: unknown classes {unknown}; available: {info.available_classes}")
    if len(set(classes)) != len(classes):
        raise ValueError(f"{task}: classes must be unique, got {classes}")
    if len(classes) < (1 if info.multilabel else 2):
        raise ValueError(f"{task}: need at least {1 if info.multilabel else 2} classes, got {classes}")
    return info, size, classes


def image_rng(task: str, seed: int, i: int) -> np.random.Generator:
    """The generator image ``i`` is drawn from: independent of ``n`` by design."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(task.encode()), int(i)]))


def iter_samples(task: str, n: int, seed: int = 0, size: tuple[int, int] | None = None,
                 classes: list[str] | None = None) -> Iterator[tuple[np.ndarray, list[int], np.ndarray | None]]:
    """Yield ``(image, label indices, masks or None)`` one image at a time (low memory)."""
    info, size, classes = _check(task, size, classes, n, seed)
    for i in range(n):
        rng = image_rng(task, seed, i)
        if info.multilabel:
            present = protein.draw_labels(rng, i, len(classes))
            img, masks = protein.render(rng, [classes[j] for j in present], size, classes)
            yield img, present, masks
        else:
            k = i % len(classes)  # round-robin: balanced for every n
            yield _RENDER[task](rng, classes[k], size), [k], None


def generate(task: str, n: int, seed: int = 0, size: tuple[int, int] | None = None,
             classes: list[str] | None = None) -> SynthSet:
    """Generate ``n`` images of ``task`` (see :data:`TASKS`), balanced over ``classes``."""
    info, size, classes = _check(task, size, classes, n, seed)
    images, labels, masks = [], [], []
    for img, lab, m in iter_samples(task, n, seed, size, classes):
        images.append(img)
        labels.append(lab)
        masks.append(m)
    return SynthSet(images, labels, classes, info.multilabel, list(info.channel_names),
                    masks if info.multilabel else None, task)


def write_dataset(task: str, outdir: str | Path, n: int, seed: int = 0, size: tuple[int, int] | None = None,
                  classes: list[str] | None = None,
                  progress: Callable[[int, int], None] | None = None) -> Path:
    """Write ``n`` images of ``task`` to ``outdir`` in the layout the data loaders read.

    Single-label: ``outdir/<class>/<task>_<i:05d>.png`` (``.tif`` for channel-first
    tasks).  Multi-label: ``outdir/images/*.tif``, ``outdir/labels.csv``
    (``path,labels``, labels joined by ``;``), ``outdir/masks/<stem>.tif`` (K, H, W)
    uint8 0/1, and ``outdir/classes.txt``, which both layouts get (class order).
    ``progress(done, total)`` is called after each image.  Returns ``outdir``.
    """
    info, size, classes = _check(task, size, classes, n, seed)
    return write_samples(info, Path(outdir), classes, iter_samples(task, n, seed, size, classes), n, progress)


__all__ = ["TASKS", "TaskInfo", "SynthSet", "generate", "write_dataset", "iter_samples", "image_rng"]
