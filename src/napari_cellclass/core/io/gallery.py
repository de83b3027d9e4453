"""A folder of many images as one lazy stack: one napari layer, a slider, no
hundreds of layers, and only the plane on screen is read.

:class:`FolderStack` is a small array-like (``shape``, ``dtype``, ``ndim``,
``__getitem__``) that napari displays like any array.  Only headers are read up
front; ``stack[i]`` decodes file ``i`` (a few decoded files are cached, so moving
back and forth is instant).  Images of different sizes are padded with 0 at the
bottom and right to the largest size, so a pixel ``(y, x)`` of plane ``i`` is pixel
``(y, x)`` of its file: annotations made on the stack map back unchanged, and
:attr:`FolderStack.sizes` says where each real image ends.

Layout of the stack: all greyscale → ``(N, H, W)``; RGB(A) → ``(N, H, W, 3|4)``
(greyscale files become 3 equal channels, alpha is dropped when some files have
none); other multichannel files with equal channel counts → ``(N, C, H, W)``.
Files that are stacks themselves contribute one plane per frame.  The dtype is
the common type of all files (uint8 + uint16 → uint16); values are not rescaled.

One broken file must not cost the user the whole folder: files whose header cannot
be read are left out (listed in :attr:`FolderStack.unreadable`), and a file that
passes its header but fails to decode later (a truncated PNG) is shown as a blank
plane and reported through ``on_error`` -- napari slices the stack inside its own
event handling, where an exception would surface as a traceback, not a message.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageError
from .header import read_header
from .images import ChannelAxis, guess_layout


class FolderStack:
    """Lazy ``(N, ...)`` stack of image files (see the module doc for the layout)."""

    def __init__(self, paths: Iterable[str | os.PathLike], *, channel_axis: ChannelAxis = "auto", cache: int = 4,
                 on_error: Callable[[Path, str], None] | None = None) -> None:
        given = [Path(p) for p in paths]
        if not given:
            raise ImageError("no images to show", "choose a folder with .tif, .png or .jpg images")
        #: the files in the stack (unreadable ones left out)
        self.paths: list[Path] = []
        #: file → why it cannot be shown: left out at opening, or blank since a read failed
        self.unreadable: dict[Path, str] = {}
        #: called once per file whose pixels fail to decode after opening (path, message)
        self.on_error = on_error
        self._channel_axis = channel_axis
        self._cache: OrderedDict[Path, tuple[Any, Any]] = OrderedDict()
        self._cache_size = max(0, int(cache))
        #: how many files were decoded so far (for tests and the curious)
        self.reads = 0
        self.entries: list[tuple[Path, int]] = []
        #: original (height, width) of each plane; the rest of the plane is padding
        self.sizes: list[tuple[int, int]] = []
        chans, dtypes, rgbs = [], [], []
        for p in given:
            try:
                head = read_header(p)
                axis = head.channel_axis if channel_axis == "auto" else channel_axis
                lay = guess_layout(head.shape, axis, rgb=head.rgb if channel_axis == "auto" else None, name=str(p))
            except ImageError as err:
                self.unreadable[p] = str(err)
                continue
            self.paths.append(p)
            is_rgb = lay.channel_axis == len(lay.shape) - 1 and lay.n_channels in (3, 4)
            for t in range(lay.n_frames):
                self.entries.append((p, t))
                self.sizes.append((lay.height, lay.width))
            chans.append(lay.n_channels)
            rgbs.append(is_rgb)
            dtypes.append(head.dtype)
        if not self.paths:
            first = next(iter(self.unreadable.values()))
            raise ImageError(f"none of the {len(given)} image file(s) can be read (first: {first})",
                             "re-export or re-copy the files, or choose another folder")
        self.dtype = np.result_type(*dtypes)
        if self.dtype == np.bool_:
            self.dtype = np.dtype(np.uint8)
        self.rgb = any(rgbs) and all(c in (1, 3, 4) for c in chans)
        if self.rgb:
            self.n_channels = 4 if all(c == 4 for c in chans) else 3
        elif len(set(chans)) == 1:
            self.n_channels = chans[0]
        else:
            counts = sorted(set(chans))
            raise ImageError(f"the images have different channel counts {counts}; one stack needs one count",
                             "choose a folder of images with the same channels, or convert them first")
        h = max(s[0] for s in self.sizes)
        w = max(s[1] for s in self.sizes)
        n = len(self.entries)
        if self.rgb:
            self.shape: tuple[int, ...] = (n, h, w, self.n_channels)
            self.channel_axis: int | None = 3
        elif self.n_channels == 1:
            self.shape, self.channel_axis = (n, h, w), None
        else:
            self.shape, self.channel_axis = (n, self.n_channels, h, w), 1

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, recursive: bool = False, **kw: Any) -> FolderStack:
        from .files import find_images

        return cls(find_images([folder], recursive=recursive), **kw)

    # ------------------------------------------------------------------ array-like
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"FolderStack({len(self)} planes from {len(self.paths)} files, shape={self.shape}, dtype={self.dtype})"

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            i = key.index(Ellipsis)
            key = key[:i] + (slice(None),) * (self.ndim - len(key) + 1) + key[i + 1:]
        first, rest = (key[0] if key else slice(None)), key[1:]
        if isinstance(first, (int, np.integer)):
            return self.plane(int(first))[rest]
        indices = np.arange(len(self))[first]
        stacked = np.stack([self.plane(int(i)) for i in np.atleast_1d(indices)])
        return stacked[(slice(None), *rest)]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self[:]
        return arr if dtype is None else arr.astype(dtype)

    # ------------------------------------------------------------------ planes
    def plane(self, i: int) -> np.ndarray:
        """Plane ``i`` in the stack's per-plane layout, padded to the common size."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"plane {i} does not exist (the folder gives {n} planes)")
        i %= n
        path, frame = self.entries[i]
        if path in self.unreadable:  # already reported; reading it again would fail again
            return np.zeros(self.shape[1:], self.dtype)
        from .crops import read_region

        try:
            data, layout = self._decoded(path)
            chw = read_region(data, layout, frame, slice(None), slice(None), str(path))
            chw = self._match_channels(chw, path)
        except (ImageError, OSError) as err:
            why = str(err) if isinstance(err, ImageError) else f"{path}: cannot read the image ({err})"
            self.unreadable[path] = why
            if self.on_error is not None:
                self.on_error(path, why)
            return np.zeros(self.shape[1:], self.dtype)
        hw = self.shape[-3:-1] if self.rgb else self.shape[-2:]
        out = np.zeros((chw.shape[0], *hw), dtype=self.dtype)
        out[:, : chw.shape[1], : chw.shape[2]] = chw
        if self.rgb:
            return np.moveaxis(out, 0, -1)
        return out[0] if self.channel_axis is None else out

    def plane_error(self, i: int) -> str | None:
        """Why plane ``i`` is blank (its file could not be read), or None: lets a
        classifier report that plane as an error instead of classifying zeros."""
        return self.unreadable.get(self.entries[i % len(self)][0])

    def _match_channels(self, chw: np.ndarray, path: Path) -> np.ndarray:
        c = chw.shape[0]
        if self.rgb and c == 1:
            return np.repeat(chw, 3, axis=0) if self.n_channels == 3 else np.concatenate(
                [np.repeat(chw, 3, axis=0), np.full_like(chw, np.iinfo(chw.dtype).max if chw.dtype.kind in "iu" else 1)])
        if self.rgb and c == 4 and self.n_channels == 3:
            return chw[:3]
        if c != self.n_channels:
            raise ImageError(f"{path}: has {c} channels, the stack {self.n_channels}", "the file changed since the folder was opened; reopen it")
        return chw

    def _decoded(self, path: Path) -> tuple[Any, Any]:
        hit = self._cache.get(path)
        if hit is not None:
            self._cache.move_to_end(path)
            return hit
        from .files import read_image

        f = read_image(path)
        self.reads += 1
        axis = f.channel_axis if self._channel_axis == "auto" else self._channel_axis
        layout = guess_layout(f.data.shape, axis, rgb=f.rgb if self._channel_axis == "auto" else None, name=str(path))
        item = (f.data, layout)
        if self._cache_size:
            self._cache[path] = item
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return item

    # ------------------------------------------------------------------ mapping back
    def source(self, i: int) -> tuple[Path, int]:
        """(file, frame inside that file) of plane ``i``."""
        return self.entries[i]

    def index_of(self, path: str | os.PathLike, frame: int = 0) -> int:
        want = Path(os.path.abspath(path))
        for i, (p, t) in enumerate(self.entries):
            if t == frame and Path(os.path.abspath(p)) == want:
                return i
        raise KeyError(f"{path} (frame {frame}) is not in this stack")

    def original(self, i: int, plane: np.ndarray) -> np.ndarray:
        """Cut the padding off a 2-D (H, W) array laid over plane ``i`` (e.g. painted labels)."""
        h, w = self.sizes[i]
        return np.asarray(plane)[..., :h, :w]

    def contrast_limits(self) -> tuple[float, float]:
        """Limits from the dtype, so a viewer need not scan every file to set them."""
        if self.dtype.kind in "iu":
            info = np.iinfo(self.dtype)
            return float(max(info.min, 0)), float(info.max)
        return 0.0, 1.0
