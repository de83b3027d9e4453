"""Painted pixel labels of an annotation document: one mask file per image plane.

:class:`PixelLabels` writes and reads the mask files (format in :mod:`.masks`)
and deletes the ones nothing refers to any more.

A plane's strokes alternate between two files, ``<image>-f<frame>-a.tif`` and
``-b.tif``: each stroke overwrites (atomically) the one the annotation file does
*not* point at, then the annotation file is switched to it.  So a crash at any
moment leaves the annotation file pointing at a complete mask, and a plane never
has more than two mask files however often it is painted.  Undo needs the pixels
a later stroke overwrote: the bytes are kept in memory with the undo steps that
refer to that file (:attr:`~.history.UndoStep.mask_bytes`) and written back
before the step is restored.  The pixel item keeps its id from stroke to stroke.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..atomicfile import describe_os_error, write_atomic
from . import masks
from .docfile import DocumentFile
from .document import AnnotationDocument
from .history import History, UndoStep
from .imageregistry import ImageRegistry
from .labelling import check_target
from .schema import AnnotationSaveError, Item


class PixelLabels:
    """The ``pixels`` items of ``doc`` and their mask files beside ``file``."""

    def __init__(self, doc: AnnotationDocument, images: ImageRegistry, history: History, file: DocumentFile) -> None:
        self.doc, self.images, self.history, self.file = doc, images, history, file
        history.before_restore = self._put_back

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
            gone = {id(it) for it in old}
            doc.items = [it for it in doc.items if id(it) not in gone or (present and it is old[0])]
            if not present:
                return None
            rel = self._next_file(image, frame, old[0].mask if old else None)
            self._keep_for_undo(rel)
            self._write(rel, m)
            labels = tuple(c for _, c in values)
            if old:  # the same annotation, repainted: same id, same place in the list
                item = replace(old[0], labels=labels, mask=rel, values=values)
                doc.items = [item if it is old[0] else it for it in doc.items]
            else:
                item = doc.new_item("pixels", image, frame, labels, mask=rel, values=values)
                doc.items.append(item)
        return item

    def _next_file(self, image: str, frame: int, current: str | None) -> str:
        """The mask file the next stroke of the plane goes to: the slot not in use."""
        stem = f"{self.file.masks_folder.name}/{image}-f{int(frame)}"
        if self.file.changed_on_disk():
            # another program wrote the annotations: its file may point at either slot;
            # write a name of our own (our annotation write will be refused, and Save as… keeps it)
            import secrets

            return f"{stem}-w{secrets.token_hex(4)}.tif"
        return f"{stem}-b.tif" if current == f"{stem}-a.tif" else f"{stem}-a.tif"

    def _keep_for_undo(self, rel: str) -> None:
        """Before ``rel`` is overwritten: give its bytes to the undo steps that point at it."""
        steps = [st for st in self.history.steps
                 if rel not in st.mask_bytes and any(it.mask == rel for it in st.snapshot.items)]
        if not steps:
            return
        try:
            data = (self.file.folder / rel).read_bytes()
        except OSError:
            return  # gone already: there is nothing an undo could bring back
        for st in steps:
            st.mask_bytes[rel] = data

    def _put_back(self, step: UndoStep) -> None:
        """Write back the mask files a later stroke overwrote, before ``step`` is undone.
        A file the current state points at already holds these bytes (strokes only
        write the slot not in use), so only files not in use are actually written."""
        for rel, data in step.mask_bytes.items():
            path = self.file.folder / rel
            try:
                if path.is_file() and path.read_bytes() == data:
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(path, data)
            except OSError as err:
                raise AnnotationSaveError(
                    f"{path}: could not restore the painted labels to undo ({describe_os_error(err)})",
                    "free disk space or fix the permissions and undo again") from err

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
