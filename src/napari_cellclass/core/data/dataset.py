"""The labelled image collection every training, evaluation and CV run reads.

A :class:`Dataset` is a view (a list of indices) onto a shared :class:`SampleStore` that
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
from typing import Any

import numpy as np

from ..errors import CellclassError, DataError
from ..io.images import ChannelAxis, get_plane, inspect

RAW_CACHE_BYTES = 1 << 30  # raw pixels kept in memory; beyond this, least recently used are re-read


class SampleStore:
    """Sources, labels and caches shared by a data set and all its subsets."""

    def __init__(self, sources: list[Any], names: list[str], labels: list[list[int]], classes: list[str],
                 multilabel: bool, channel_axis: ChannelAxis, cache: bool, masks: list[Any] | None = None,
                 masks_are_targets: bool = True):
        self.sources = sources
        self.names = names
        self.labels = labels
        self.classes = classes
        self.multilabel = multilabel
        self.channel_axis = channel_axis
        self.cache = cache
        #: per item: a mask file, an in-memory mask (see :func:`per_class_mask`) or None
        self.mask_sources = masks
        #: whether training may use the masks as dense targets (False: evaluation ground truth only)
        self.masks_are_targets = masks_are_targets
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
        from ..io.files import read_image

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

    def has_mask(self, i: int) -> bool:
        return self.mask_sources is not None and self.mask_sources[i] is not None

    def has_target_mask(self, i: int) -> bool:
        return self.masks_are_targets and self.has_mask(i)

    def mask(self, i: int, shape: tuple[int, int]) -> np.ndarray | None:
        """(K, H, W) bool per-class mask of item ``i`` (None without one); ``shape`` is its image's (H, W)."""
        if not self.has_mask(i):
            return None
        src = self.mask_sources[i]  # type: ignore[index]
        where = self.names[i]
        if isinstance(src, (str, os.PathLike)):
            import tifffile

            try:
                src = np.asarray(tifffile.imread(src))
            except (OSError, ValueError) as err:
                raise DataError(f"{where}: cannot read its mask {src} ({err})", "re-export the data set") from err
            where = f"{where} (mask {self.mask_sources[i]})"  # type: ignore[index]
        return per_class_mask(src, len(self.classes), shape, where)


def per_class_mask(mask: Any, n_classes: int, shape: tuple[int, int], where: str) -> np.ndarray:
    """A mask in either accepted form → (K, H, W) bool, or a DataError naming ``where``.

    Forms: (K, H, W) planes, nonzero where the pixel has class k (what an export
    writes in ``masks/``); or an (H, W) label image, 0 = unlabelled and k = class k
    (what the Labels layer paints).  With one class a 2-D mask is its one plane.
    """
    m = np.asarray(mask)
    h, w = int(shape[0]), int(shape[1])
    if m.ndim == 2 and m.shape == (h, w):
        if n_classes == 1 or m.dtype == np.bool_:
            m = m[None] != 0
        elif m.dtype.kind not in "iu" or (m.size and (int(m.min()) < 0 or int(m.max()) > n_classes)):
            raise DataError(f"{where}: a 2-D mask must be a label image with values 0..{n_classes} "
                            f"(0 = unlabelled, k = class k), got {m.dtype} {m.min()}..{m.max()}",
                            "paint with the class labels, or give one plane per class (K, H, W)")
        else:
            m = m[None] == np.arange(1, n_classes + 1, dtype=m.dtype)[:, None, None]
    if m.shape != (n_classes, h, w):
        raise DataError(f"{where}: the mask has shape {m.shape}, the image needs {(n_classes, h, w)} "
                        f"(one plane per class at the image's {h}x{w}) or an {(h, w)} label image",
                        "paint the mask on this image itself, or re-export the data set")
    return m != 0


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

    def __init__(self, store: SampleStore, index: Sequence[int] | None = None) -> None:
        self._store = store
        self._index = np.arange(len(store.sources)) if index is None else np.asarray(index, dtype=np.int64)

    # ------------------------------------------------------------------ contract
    @property
    def store(self) -> SampleStore:
        """The sources and caches this data set shares with its subsets (tensors, FCN targets read them)."""
        return self._store

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
        return _Masks(self) if self._store.mask_sources is not None else None

    def has_mask(self, i: int) -> bool:
        """Whether item ``i`` carries a per-class mask (painted target or evaluation ground truth)."""
        return self._store.has_mask(int(self._index[i]))

    def has_target_mask(self, i: int) -> bool:
        """Whether item ``i``'s mask is a dense training target (painted labels)."""
        return self._store.has_target_mask(int(self._index[i]))

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
