"""Registering annotated images and reaching their pixels: file images by path +
hash, in-memory images saved once.  :class:`ImageRegistry` owns the open pixel
arrays; the records themselves are the document's ``images``."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..atomicfile import describe_os_error
from ..errors import DataError, ImageError
from ..io.images import ChannelAxis, Layout
from . import imagerefs
from .docfile import DocumentFile
from .document import AnnotationDocument
from .schema import AnnotationSaveError, ImageRecord


class AnnotationWarning(UserWarning):
    """Something the user should know about their annotations (shown, not raised)."""


class ImageRegistry:
    """The document's images: registering them (written through, not undoable) and their pixels."""

    def __init__(self, doc: AnnotationDocument, file: DocumentFile, lock: threading.RLock) -> None:
        self.doc, self.file, self.lock = doc, file, lock
        #: key -> array standing in for the file (in-memory images, attached layers)
        self._live: dict[str, Any] = {}
        #: key -> opened file pixels (the two most recent)
        self._file_cache: dict[str, Any] = {}

    @property
    def _images(self) -> dict[str, ImageRecord]:
        return self.doc.images

    @property
    def folder(self) -> Path:
        return self.file.folder

    @property
    def images(self) -> dict[str, ImageRecord]:
        return dict(self._images)

    def image(self, key: str) -> ImageRecord:
        try:
            return self._images[key]
        except KeyError:
            raise DataError(f"no image {key!r} in the annotations", "register it first with add_image()") from None

    def layout(self, key: str) -> Layout:
        return imagerefs.layout_of(self.image(key))

    def find_image(self, *, path: str | os.PathLike | None = None, name: str | None = None) -> str | None:
        """Key of a registered image by file path, or (in-memory images) by name."""
        if path is not None:
            want = Path(os.path.abspath(path))
            for k, rec in self._images.items():
                if rec.origin == "file" and imagerefs.absolute(rec, self.folder) == want:
                    return k
            return None
        for k, rec in self._images.items():
            if rec.name == name:
                return k
        return None

    def add_image(self, data: Any = None, *, path: str | os.PathLike | None = None, name: str | None = None,
                  channel_axis: ChannelAxis = "auto", rgb: bool | None = None) -> str:
        """Register an image (idempotent) and return its key.

        With ``path`` (napari: ``layer.source.path``) the file is recorded by path,
        hash and shape (``data``, when given, must have the file's shape).  Without
        it ``data`` is saved once into ``images/`` under ``name``.  ``channel_axis`` /
        ``rgb`` (napari: ``layer.rgb``) settle the layout, as in ``guess_layout``.
        """
        with self.lock:
            if path is not None:
                return self._add_file(Path(path), data, name, channel_axis, rgb)
            if data is None:
                raise ImageError("an image without a file needs its pixels", "pass data= (the layer's data) or path=")
            return self._add_memory(data, name or "image", channel_axis, rgb)

    def _add_file(self, path: Path, data: Any, name: str | None, channel_axis: ChannelAxis, rgb: bool | None) -> str:
        from ..io.header import read_header

        key = self.find_image(path=path)
        if key is not None:
            rec = self._images[key]
            if data is not None and tuple(data.shape) != rec.shape:
                warnings.warn(f"{rec.name}: the layer has shape {tuple(data.shape)} but was annotated with shape "
                              f"{rec.shape}; check its annotations", AnnotationWarning, stacklevel=4)
            self._check_one(key)
            return key
        head = read_header(path)
        shape = tuple(data.shape) if data is not None else head.shape
        if channel_axis == "auto" and rgb is None and shape == head.shape:
            channel_axis, rgb = head.channel_axis, head.rgb
        name = name or path.name
        axis = imagerefs.resolve_channel_axis(shape, channel_axis, rgb, name)
        st = path.stat()
        rec = ImageRecord(imagerefs.unique_key(path.name, set(self._images)), imagerefs.record_path(path, self.folder),
                          name, "file", shape, str(np.dtype(data.dtype if data is not None else head.dtype)), axis,
                          imagerefs.hash_file(path), st.st_size, st.st_mtime_ns)
        return self._register(rec)

    def _add_memory(self, data: Any, name: str, channel_axis: ChannelAxis, rgb: bool | None) -> str:
        digest = imagerefs.hash_array(data)
        for k, rec in self._images.items():
            if rec.origin == "memory" and rec.hash == digest:
                return k
        shape = tuple(int(s) for s in data.shape)
        axis = imagerefs.resolve_channel_axis(shape, channel_axis, rgb, name)
        key = imagerefs.unique_key(name, set(self._images))
        self.file.images_folder.mkdir(parents=True, exist_ok=True)
        file = self.file.images_folder / f"{key}.tif"
        n = 2
        while file.exists() and imagerefs.hash_array(_tiff(file)) != digest:
            file, n = self.file.images_folder / f"{key}-{n}.tif", n + 1
        if not file.exists():
            is_rgb = axis is not None and axis == len(shape) - 1 and shape[-1] in (3, 4)
            try:
                imagerefs.write_tiff(file, np.asarray(data), is_rgb)
            except OSError as err:
                raise AnnotationSaveError(f"{file}: could not save a copy of the in-memory image {name!r} "
                                          f"({describe_os_error(err)})",
                                          "annotate it after choosing an annotation file in a writable folder") from err
        st = file.stat()
        rec = ImageRecord(key, imagerefs.record_path(file, self.folder), name, "memory", shape,
                          str(np.dtype(data.dtype)), axis, digest, st.st_size, st.st_mtime_ns)
        self._live[key] = data
        return self._register(rec)

    def _register(self, rec: ImageRecord) -> str:
        self._images[rec.key] = rec
        self.file.write(self.doc)  # registering is not an undoable change, but is written through
        return rec.key

    def attach(self, key: str, data: Any) -> None:
        """Use ``data`` (e.g. an open layer's array) for crops instead of re-reading the file."""
        rec = self.image(key)
        if tuple(data.shape) != rec.shape:
            raise ImageError(f"{rec.name}: data of shape {tuple(data.shape)} cannot stand in for an image of shape {rec.shape}",
                             "attach the layer the annotations were made on")
        self._live[key] = data

    def pixels(self, key: str) -> Any:
        """An array of the image's pixels: attached data, else its file (memory-mapped when possible)."""
        if key in self._live:
            return self._live[key]
        rec = self.image(key)
        if key not in self._file_cache:
            if len(self._file_cache) >= 2:
                self._file_cache.pop(next(iter(self._file_cache)))
            self._file_cache[key] = imagerefs.open_pixels(imagerefs.absolute(rec, self.folder), rec)
        return self._file_cache[key]

    def check_images(self) -> list[imagerefs.ImageProblem]:
        """Images whose file is missing or changed since annotated (each also warned)."""
        with self.lock:
            return [p for k in list(self._images) if (p := self._check_one(k)) is not None]

    def _check_one(self, key: str) -> imagerefs.ImageProblem | None:
        problem, rec = imagerefs.check_record(self._images[key], self.folder)
        if rec is not self._images[key]:
            self._images[key] = rec
            with contextlib.suppress(AnnotationSaveError):
                self.file.write(self.doc)
        if problem is not None:
            warnings.warn(problem.message, AnnotationWarning, stacklevel=4)
        return problem

    def accept_image_change(self, key: str) -> None:
        """The file changed on purpose: record its new hash, size and shape."""
        from ..io.header import read_header

        with self.lock:
            rec = self.image(key)
            path = imagerefs.absolute(rec, self.folder)
            head, st = read_header(path), path.stat()
            self._images[key] = replace(rec, shape=head.shape, dtype=str(head.dtype), hash=imagerefs.hash_file(path),
                                        size=st.st_size, mtime_ns=st.st_mtime_ns)
            self._file_cache.pop(key, None)
            self.file.write(self.doc)

    def relocated(self, new_folder: Path) -> dict[str, ImageRecord]:
        """The records as seen from ``new_folder`` (Save as): saved in-memory images are
        copied there, file paths re-expressed relative to it.  The document is unchanged."""
        out = {}
        for key, rec in self._images.items():
            src = imagerefs.absolute(rec, self.folder)
            if rec.origin == "memory":
                dst = new_folder / rec.path
                dst.parent.mkdir(parents=True, exist_ok=True)
                if src.is_file() and not dst.exists():
                    shutil.copy2(src, dst)
                out[key] = rec
            else:
                out[key] = replace(rec, path=imagerefs.record_path(src, new_folder))
        return out


def _tiff(path: Path) -> np.ndarray:
    import tifffile

    return tifffile.imread(path)
