"""The labelled image collection every training, evaluation and CV run reads.

A :class:`Dataset` is a view (a list of indices) onto a shared :class:`_Store` that
holds the sources (file paths or in-memory arrays), their labels and two caches:
raw pixels (bounded by bytes, so a folder of 2560x1922 RGB images cannot fill the
memory) and network-ready tensors per preprocessing recipe (see ``tensors.py``).
Subsets share the store, so train/validation splits and k-fold runs read and
preprocess each image once.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CellclassError, DataError
from ..images import ChannelAxis, get_plane, inspect

RAW_CACHE_BYTES = 1 << 30  # raw pixels kept in memory; beyond this, least recently used are re-read


class _Store:
    """Sources, labels and caches shared by a data set and all its subsets."""

    def __init__(self, sources: list[Any], names: list[str], labels: list[list[int]], classes: list[str],
                 multilabel: bool, channel_axis: ChannelAxis, cache: bool, mask_paths: list[Path | None] | None = None):
        self.sources = sources
        self.names = names
        self.labels = labels
        self.classes = classes
        self.multilabel = multilabel
        self.channel_axis = channel_axis
        self.cache = cache
        self.mask_paths = mask_paths
        self._raw: OrderedDict[int, tuple[np.ndarray, float | None]] = OrderedDict()
        self._raw_bytes = 0
        #: network-ready tensors per (preprocess, in_chans, device) key; filled by tensors.py
        self.tensors: dict[Any, Any] = {}

    def raw(self, i: int) -> tuple[np.ndarray, float | None]:
        """(C, H, W) pixels in the source's own dtype (or float32) and its value range."""
        hit = self._raw.get(i)
        if hit is not None:
            self._raw.move_to_end(i)
            return hit
        plane, vmax = self._read(i)
        if self.cache and plane.nbytes <= RAW_CACHE_BYTES // 4:
            self._raw[i] = (plane, vmax)
            self._raw_bytes += plane.nbytes
            while self._raw_bytes > RAW_CACHE_BYTES and len(self._raw) > 1:
                _, (old, _) = self._raw.popitem(last=False)
                self._raw_bytes -= old.nbytes
        return plane, vmax

    def _read(self, i: int) -> tuple[np.ndarray, float | None]:
        from ..imagefiles import read_image

        src, name = self.sources[i], self.names[i]
        axis, rgb = self.channel_axis, None
        try:
            if isinstance(src, (str, os.PathLike)):
                f = read_image(src)
                src, name = f.data, str(f.path)
                axis = f.channel_axis if self.channel_axis == "auto" else self.channel_axis
                rgb = f.rgb
            layout, vmax = inspect(src, axis, None, rgb, name)
            if layout.is_stack:
                raise DataError(
                    f"{name}: is a stack {layout.describe()}; a training item must be one image",
                    "export the planes as separate files, or pass channel_axis if the first axis holds channels",
                )
            return get_plane(src, layout, 0, name, native=True), vmax
        except DataError:
            raise
        except CellclassError as err:  # ImageError etc.: say it happened while reading the data set
            raise DataError(f"cannot use training image {name}: {err.problem}", err.fix) from err

    def mask(self, i: int, shape: tuple[int, int]) -> np.ndarray | None:
        if self.mask_paths is None or self.mask_paths[i] is None:
            return None
        import tifffile

        path = self.mask_paths[i]
        try:
            m = np.asarray(tifffile.imread(path)).astype(bool)
        except (OSError, ValueError) as err:
            raise DataError(f"cannot read the mask {path} ({err})", "re-export the data set") from err
        if m.ndim == 2:
            m = m[None]
        if m.shape != (len(self.classes), *shape):
            raise DataError(
                f"mask {path} has shape {m.shape}, expected {(len(self.classes), *shape)} (classes, H, W)",
                "masks must hold one plane per class, at the image's size",
            )
        return m


class _Masks(Sequence):
    """Per-item (K, H, W) bool masks, read on access (None for items without one)."""

    def __init__(self, ds: Dataset) -> None:
        self._ds = ds

    def __len__(self) -> int:
        return len(self._ds)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        j = self._ds._index[i]
        plane, _ = self._ds._store.raw(j)
        return self._ds._store.mask(j, plane.shape[-2:])


class Dataset:
    """Labelled images: ``ds[i]`` is ``(float32 (C, H, W) plane, value_max)``.

    ``value_max`` is the source dtype's range (255 for uint8, None for float data),
    which the ``meanstd`` normalisation needs to scale like the model will at
    inference.
    """

    def __init__(self, store: _Store, index: Sequence[int] | None = None) -> None:
        self._store = store
        self._index = np.arange(len(store.sources)) if index is None else np.asarray(index, dtype=np.int64)

    # ------------------------------------------------------------------ contract
    @property
    def classes(self) -> list[str]:
        return list(self._store.classes)

    @property
    def multilabel(self) -> bool:
        return self._store.multilabel

    @property
    def names(self) -> list[str]:
        return [self._store.names[j] for j in self._index]

    @property
    def labels(self) -> list[list[int]]:
        return [list(self._store.labels[j]) for j in self._index]

    @property
    def masks(self) -> _Masks | None:
        return _Masks(self) if self._store.mask_paths is not None else None

    @property
    def in_chans(self) -> int:
        if not len(self):
            raise DataError("the data set is empty", "add labelled images")
        return int(self._store.raw(int(self._index[0]))[0].shape[0])

    @property
    def indices(self) -> np.ndarray:
        """Positions of this data set's items in the shared store (cache keys)."""
        return self._index.copy()

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, i: int) -> tuple[np.ndarray, float | None]:
        plane, vmax = self._store.raw(int(self._index[i]))
        return plane.astype(np.float32, copy=False), vmax

    def raw(self, i: int) -> tuple[np.ndarray, float | None]:
        """Like ``ds[i]`` but in the source dtype (less memory to move to a GPU)."""
        return self._store.raw(int(self._index[i]))

    def class_counts(self) -> list[int]:
        counts = [0] * len(self._store.classes)
        for lab in self.labels:
            for k in lab:
                counts[k] += 1
        return counts

    def targets(self) -> np.ndarray:
        y = np.zeros((len(self), len(self._store.classes)), np.float32)
        for r, lab in enumerate(self.labels):
            y[r, lab] = 1.0
        return y

    def subset(self, indices: Sequence[int] | np.ndarray) -> Dataset:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise DataError(f"subset indices out of range for a data set of {len(self)} items")
        return Dataset(self._store, self._index[idx])

    def __repr__(self) -> str:
        kind = "multi-label" if self.multilabel else "single-label"
        return f"Dataset({len(self)} images, {kind}, classes={self.classes}, counts={self.class_counts()})"
