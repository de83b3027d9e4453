"""The default intensity policy of a model trained from an architecture name.

Dividing by the pixel type's range (uint8 /255, uint16 /65535, float as is) and then
subtracting ImageNet's mean is right for 8-bit photographs only: a 12-bit camera
image in a uint16 file arrives as a near-constant (values 100-4000 of 65535), a
float image of range 0-3e4 arrives unscaled.  Microscopy data is mostly the latter.

Default policy (``Normalization('image_std')``): per image and channel, subtract the
image's mean and divide by its standard deviation (tiles of a large image use the
whole image's statistics, core.inference.tiling).  It is dtype- and range-free, so a
12-bit image in a uint16 file, its float copy and its 8-bit rendering reach the
network alike, and it is what a plain PyTorch loop does.  Chosen on evidence over
the training-set policy below (benchmarks/bench_train_vs_plain.py, 240 training
images, 8 epochs from scratch, macro-F1): 8-bit RGB cell lines 0.94 against 0.46 for
``dataset`` (plain loop 0.88) — absolute brightness and colour cast differ from image
to image in real acquisitions and a fixed scaling lets the network learn those
instead of the cells; on the other data sets the two tie.

``Normalization('dataset')`` (``normalization="dataset"``, ``--normalization dataset``)
stays available for data where absolute brightness is the biology (lipid load,
expression level): per channel, the *training set's* mean and standard deviation,
measured in the images' own units when training starts, stored in the model file and
applied as the same two constants to every image, tile and dock.  A channel constant
over the whole training set is scaled by its own level (never divided by ~0).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ..data import Dataset
from ..errors import DataError
from ..io.images import match_channels
from ..io.preprocess import Normalization, Preprocess

POLICY = "image_std"
#: policies a new architecture-name model may be given (``BuildOptions.normalization``)
CHOICES = ("image_std", "dataset", "percentile", "meanstd")


def default_preprocess(input_size: tuple[int, int], normalization: str | None = None) -> Preprocess:
    """The preprocessing of a new model trained from an architecture name (for ``dataset``,
    statistics still to be measured on its training split by :func:`with_dataset_stats`)."""
    method = normalization or POLICY
    if method not in CHOICES:
        raise DataError(f"unknown normalisation {method!r} for a new model", f"use one of {', '.join(CHOICES)}")
    return Preprocess(input_size=tuple(input_size), normalization=Normalization(method))


def needs_dataset_stats(pre: Preprocess) -> bool:
    return pre.normalization.method == "dataset" and pre.normalization.mean is None


@torch.no_grad()
def dataset_stats(ds: Dataset, pre: Preprocess, in_chans: int) -> tuple[tuple[float, ...], tuple[float, ...], str]:
    """(per-channel mean, std, a description) over the training images as the network
    input is cut and resized, before normalisation (letterbox padding excluded)."""
    raw = replace(pre, normalization=Normalization("none"))
    total = np.zeros(in_chans, np.float64)
    total_sq = np.zeros(in_chans, np.float64)
    lo, hi = np.full(in_chans, np.inf), np.full(in_chans, -np.inf)
    count = 0
    for i in range(len(ds)):
        plane, _ = ds.raw(i)  # the source dtype, from the store's cache (training reads it again from there)
        plane = np.ascontiguousarray(match_channels(plane, in_chans, None, ds.names[i]), dtype=np.float32)
        x, geom = raw.prepare_batch(torch.from_numpy(plane)[None])
        y0, x0, y1, x1 = geom.dst_box
        region = x[0, :, y0:y1, x0:x1].double().flatten(1)
        total += region.sum(1).numpy()
        total_sq += (region * region).sum(1).numpy()
        lo, hi = np.minimum(lo, region.amin(1).numpy()), np.maximum(hi, region.amax(1).numpy())
        count += region.shape[1]
    if count == 0:
        raise DataError("no training images to take the intensity statistics from", "add labelled images")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
    constant = std <= 1e-6 * np.maximum(1.0, np.abs(mean))
    std = np.where(constant, np.maximum(np.abs(mean), 1.0), std)
    ranges = ", ".join(f"{a:.4g}..{b:.4g}" for a, b in zip(lo, hi))
    note = (f"training split: {len(ds)} image(s), channel range(s) {ranges}"
            + (f"; constant channel(s) {list(np.flatnonzero(constant))} scaled by their level" if constant.any() else ""))
    return tuple(float(v) for v in mean), tuple(float(v) for v in std), note


def with_dataset_stats(ds: Dataset, pre: Preprocess, in_chans: int) -> Preprocess:
    """``pre`` with the training set's statistics when it is the dataset policy without them, else ``pre``."""
    if not needs_dataset_stats(pre):
        return pre
    mean, std, note = dataset_stats(ds, pre, in_chans)
    return replace(pre, normalization=replace(pre.normalization, mean=mean, std=std, fitted_on=note))


__all__ = ["POLICY", "CHOICES", "default_preprocess", "needs_dataset_stats", "dataset_stats", "with_dataset_stats"]
