"""Painted pixel labels of an annotation document: one mask file per image plane.

:class:`PixelLabels` writes and reads the mask files (format in :mod:`.masks`)
and deletes the ones nothing refers to any more.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..atomicfile import describe_os_error
from . import masks
from .docfile import DocumentFile
from .document import AnnotationDocument
from .history import History
from .imageregistry import ImageRegistry
from .labelling import check_target
from .schema import AnnotationSaveError, Item


class PixelLabels:
    """The ``pixels`` items of ``doc`` and their mask files beside ``file``."""

    def __init__(self, doc: AnnotationDocument, images: ImageRegistry, history: History, file: DocumentFile) -> None:
        self.doc, self.images, self.history, self.file = doc, images, history, file

    def set_pixel_labels(self, image: str, frame: int, mask: Any) -> Item | None:
        """Store a painted label mask for one plane: 0 = unlabelled, ``k`` = class
        ``k - 1`` (napari Labels value = class position + 1).  An empty mask removes
        the plane's pixel labels.  Returns the item, or None when removed."""
        layout = check_target(self.images, image, frame)
        where = f"{self.images.image(image).name}, frame {frame}"
        doc = self.doc
        m = masks.check_mask(mask, (layout.height, layout.width), len(doc.classes), where)
        present = [int(v) for v in np.unique(m) if v > 0]
        values = tuple((v, doc.classes[v - 1].name) for v in present)
        old = doc.items_of(image, frame, "pixels")
        if not present and not old:
            return None
        with self.history.change(f"paint {image} frame {frame}"):
            doc.items = [it for it in doc.items if it not in old]
            item = None
            if present:
                rel = f"{self.file.masks_folder.name}/{image}-f{int(frame)}-{doc.next_id}.tif"
                self._write(rel, m)
                item = doc.new_item("pixels", image, frame, tuple(c for _, c in values), mask=rel, values=values)
                doc.items.append(item)
        return item

    def _write(self, rel: str, m: np.ndarray) -> None:
        path = self.file.folder / rel
        try:
            masks.write_mask(path, m, len(self.doc.classes))
        except OSError as err:
            raise AnnotationSaveError(
                f"{path}: could not save the painted labels ({describe_os_error(err)})",
                "free disk space or fix the permissions and paint again, or save the annotations "
                "to another file (Save as…)") from err

    def pixel_labels(self, image: str, frame: int = 0) -> np.ndarray | None:
        """The plane's label mask with values = current class position + 1, or None."""
        its = self.doc.items_of(image, frame, "pixels")
        if not its:
            return None
        stored = masks.read_mask(self.file.folder / its[0].mask)
        return masks.remap(stored, its[0].values, self.doc.class_names)

    def collect_garbage(self) -> None:
        """Delete (day-old) mask files that neither the document nor an undo step refers to."""
        folder = self.file.masks_folder
        if not folder.is_dir():
            return
        refs = [it.mask for it in self.doc.items if it.mask]
        refs += [it.mask for step in self.history.steps for it in step.snapshot.items if it.mask]
        masks.collect_garbage(folder, refs, self.file.folder, min_age_s=masks.GARBAGE_AGE_S)

    def relocated(self, new_masks: Path) -> list[Item]:
        """The items with their masks copied into ``new_masks`` (Save as); the document is unchanged."""
        import shutil

        items = []
        for it in self.doc.items:
            if it.mask is not None:
                dst = new_masks / Path(it.mask).name
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(self.file.masks_folder / Path(it.mask).name, dst)
                it = replace(it, mask=f"{new_masks.name}/{dst.name}")
            items.append(it)
        return items
