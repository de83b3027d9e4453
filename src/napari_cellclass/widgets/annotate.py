"""The annotate-and-fine-tune dock: label images, frames, regions and pixels, see
and edit what was labelled, pick what to label next, and fine-tune on it.

Thin shell.  Annotations live in an :class:`~napari_cellclass.core.annotations.AnnotationStore`
(every change written atomically before the call returns); the viewer side is
:class:`~.annotation_controller.AnnotationController`; training is the
:class:`~.finetune.FineTunePanel` tab.
"""

from __future__ import annotations

from pathlib import Path
from collections.abc import Sequence
from typing import Any, TYPE_CHECKING

from napari.utils.notifications import show_info, show_warning
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from .fold import scroll_body
from .annotation_classes import ClassList
from ..viewer.annotation_controller import AnnotationController
from ..viewer.annotation_layers import image_name
from .annotation_next import NextToLabel
from .annotation_table import AnnotationTable
from .annotate_objects import ObjectAnnotator
from .finetune import FineTunePanel
from .live_mode import LiveMode
from .runner import notify_error
from ..app.session import Session, session_for
from ..app.undo_words import in_words
from ..viewer.annotation_keys import HELP as KEY_HELP

UNDO_SHORTCUT = "Ctrl+Alt+Z"  # viewer.annotation_keys.UNDO_KEY as napari users read it

if TYPE_CHECKING:
    from napari.layers import Layer
    from napari import Viewer

DEFAULT_NAME = "annotations.json"


def default_annotation_file(layer: Layer | None) -> Path:
    """Beside the images: the folder of a folder stack or of the layer's file; for
    images without a file, the napari-cellclass config folder."""
    from ..viewer.annotation_layers import is_folder_stack
    from ..app.settings import config_dir

    if layer is not None and is_folder_stack(layer.data):
        return layer.data.paths[0].parent / DEFAULT_NAME
    path = getattr(getattr(layer, "source", None), "path", None) if layer is not None else None
    if path is not None and Path(path).is_file():
        return Path(path).parent / DEFAULT_NAME
    return config_dir() / "annotations" / DEFAULT_NAME


class AnnotateDock(QWidget):
    """Annotate (classes, keys 1–9, regions, pixels, table, what next) and fine-tune."""

    def __init__(self, napari_viewer: Viewer, session: Session | None = None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.session = session if session is not None else session_for(napari_viewer)
        settings = self.session.settings
        self.controller = AnnotationController(napari_viewer, lambda fn: QTimer.singleShot(0, fn), self._store_changed,
                                               undo=self.undo)
        self.file_label = QLabel("no annotation file open: add a class, or Open…")
        self.file_label.setWordWrap(True)
        self.open_button = QPushButton("Open…")
        self.save_as_button = QPushButton("Save as…")
        self.export_button = QPushButton("Export data set…")
        self.undo_button = QPushButton("Undo")
        self.folder_button = QPushButton("Open a folder as a stack…")
        self.classes = ClassList()
        self.where = QLabel("")
        self.where.setWordWrap(True)
        self.regions_button = QPushButton("Regions (shapes)")
        self.points_button = QPushButton("Points")
        self.pixels_button = QPushButton("Pixels (paint)")
        self.crop = QSpinBox()
        self.crop.setRange(8, 1024)
        self.crop.setValue(int(settings.get("annotate.crop_size", 64)))
        self.advance = QCheckBox("after a key, go to the next frame")
        self.advance.setChecked(bool(settings.get("annotate.advance", True)))
        self.table = AnnotationTable()
        self.next = NextToLabel(napari_viewer, self.session, self.labelled_planes, self.go_to)
        self.finetune = FineTunePanel(napari_viewer, self.session, lambda: self.store)
        self.objects = ObjectAnnotator(self)  # click segmented objects to label them (widgets.annotate_objects)
        self._build()
        self.live = LiveMode(self.finetune, self.next, lambda: self.store)
        self.finetune.layout().insertWidget(1, self.live)  # under the options, above Fine-tune / Cancel

        self.open_button.clicked.connect(self._open_clicked)
        self.save_as_button.clicked.connect(self._save_as_clicked)
        self.export_button.clicked.connect(self._export_clicked)
        self.undo_button.clicked.connect(self.undo)
        self.folder_button.clicked.connect(self._folder_clicked)
        self.classes.add_button.clicked.disconnect()
        self.classes.name.returnPressed.disconnect()
        self.classes.add_button.clicked.connect(lambda: self.add_class(self.classes.name.text()))
        self.classes.name.returnPressed.connect(lambda: self.add_class(self.classes.name.text()))
        self.classes.current_changed.connect(self.controller.set_current_class)
        self.regions_button.clicked.connect(lambda: self.add_layer("regions"))
        self.points_button.clicked.connect(lambda: self.add_layer("points"))
        self.pixels_button.clicked.connect(lambda: self.add_layer("pixels"))
        self.crop.valueChanged.connect(self._crop_changed)
        self.advance.toggled.connect(self._advance_changed)
        self.table.jump_requested.connect(self.controller.jump)
        self.table.delete_requested.connect(self.delete)
        napari_viewer.dims.events.current_step.connect(self._update_where)
        napari_viewer.layers.selection.events.active.connect(self._update_where)
        self.destroyed.connect(lambda *_: self._disconnect(napari_viewer, self.controller))
        self._crop_changed(self.crop.value())
        self._advance_changed(self.advance.isChecked())
        last = settings.get("annotate.last_file")
        if last and Path(last).is_file():  # reopening napari: carry on where the user left off
            self.open_annotations(last)
        self._store_changed()

    def _build(self) -> None:
        files = QHBoxLayout()
        for b in (self.open_button, self.save_as_button, self.export_button, self.undo_button):
            files.addWidget(b)
        tools = QHBoxLayout()
        for b in (self.regions_button, self.points_button, self.pixels_button):
            tools.addWidget(b)
        form = QFormLayout()
        form.addRow("point crop (px)", self.crop)
        form.addRow("", self.advance)
        annotate = QWidget()
        lay = QVBoxLayout(scroll_body(annotate))
        lay.addWidget(self.file_label)
        lay.addLayout(files)
        lay.addWidget(self.folder_button)
        box = QGroupBox("classes (1–9 on an image, Alt+1–9 on any layer; hover for keys)")
        box.setToolTip(KEY_HELP)
        QVBoxLayout(box).addWidget(self.classes)
        lay.addWidget(box)
        box = QGroupBox("label regions and pixels with the current class")
        inner = QVBoxLayout(box)
        inner.addLayout(tools)
        inner.addLayout(form)
        inner.addWidget(self.where)
        lay.addWidget(box)
        box = QGroupBox("segmented objects: click one to label it with the current class")
        QVBoxLayout(box).addWidget(self.objects)
        lay.addWidget(box)
        box = QGroupBox("annotations")
        QVBoxLayout(box).addWidget(self.table)
        lay.addWidget(box, 1)
        box = QGroupBox("what to label next")
        QVBoxLayout(box).addWidget(self.next)
        lay.addWidget(box)
        self.tabs = QTabWidget()
        self.tabs.addTab(annotate, "Annotate")
        self.tabs.addTab(self.finetune, "Fine-tune")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.tabs)

    def _disconnect(self, viewer: Viewer, controller: AnnotationController) -> None:
        viewer.dims.events.current_step.disconnect(self._update_where)
        viewer.layers.selection.events.active.disconnect(self._update_where)
        controller.close()

    # ------------------------------------------------------------------ the file
    @property
    def store(self) -> Any:
        return self.controller.store

    def open_annotations(self, path: str | Path) -> Any:
        """Open (or create) an annotation file; open layers it annotates are shown."""
        from ..core.annotations import AnnotationStore

        try:
            store = AnnotationStore.open(path, on_bad="new_file")
        except Exception as err:  # noqa: BLE001
            notify_error(err)
            return None
        if store.notice:
            show_warning(store.notice)
        self.session.settings.set("annotate.last_file", str(store.path))
        self.controller.set_store(store)
        return store

    def ensure_store(self) -> Any:
        if self.store is None:
            self.open_annotations(default_annotation_file(self.controller.active_image()))
        return self.store

    def _open_clicked(self) -> None:
        start = self.session.settings.get("annotate.last_file") or str(default_annotation_file(self.controller.active_image()))
        path, _ = QFileDialog.getSaveFileName(self, "Open or create an annotation file", start, "JSON (*.json)",
                                              options=QFileDialog.Option.DontConfirmOverwrite)
        if path:
            self.open_annotations(path)

    def _save_as_clicked(self) -> None:
        if self.store is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save the annotations as", str(self.store.path), "JSON (*.json)")
        if path:
            self.save_as(path)

    def save_as(self, path: str | Path) -> bool:
        try:
            self.store.save_as(path)
        except Exception as err:  # noqa: BLE001
            notify_error(err)
            return False
        self.session.settings.set("annotate.last_file", str(self.store.path))
        self._store_changed()
        return True

    def _export_clicked(self) -> None:
        if self.store is None:
            return
        out = QFileDialog.getExistingDirectory(self, "Export into an empty folder", str(self.store.folder))
        if out:
            self.export(out)

    def export(self, out: str | Path) -> Any:
        """Write the annotations as a data set folder that ``cellclass train`` reads."""
        from ..core.annotations import export_dataset

        try:
            report = export_dataset(self.store, out)
        except Exception as err:  # noqa: BLE001
            notify_error(err)
            return None
        show_info(f"exported {report.n_samples} sample(s) to {report.folder} ({report.layout})")
        return report

    def _folder_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of images as one stack")
        if folder:
            self.open_folder(folder)

    def open_folder(self, folder: str | Path) -> Any:
        """Show a folder as one lazy stack layer and open the annotation file beside it."""
        from ..core.io.gallery import FolderStack

        try:
            stack = FolderStack.from_folder(folder, on_error=self._plane_unreadable)
        except Exception as err:  # noqa: BLE001
            notify_error(err)
            return None
        if stack.unreadable:
            bad = list(stack.unreadable.values())
            more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
            show_warning(f"left out {len(bad)} file(s) that cannot be read: " + "; ".join(bad[:3]) + more)
        layer = self.viewer.add_image(stack, name=Path(folder).name, rgb=stack.rgb,
                                      contrast_limits=stack.contrast_limits())
        if self.store is None or self.store.folder != Path(folder).resolve():
            self.open_annotations(Path(folder) / DEFAULT_NAME)
        return layer

    @staticmethod
    def _plane_unreadable(path: Path, why: str) -> None:
        # called while napari slices the layer: a notification, never an exception there
        show_warning(f"shown as a blank plane: {why}")

    # ------------------------------------------------------------------ actions
    def add_class(self, name: str, color: str | None = None) -> bool:
        if self.ensure_store() is None:
            return False
        return self.classes.add(name, color)

    def add_layer(self, kind: str) -> Any:
        try:
            if self.ensure_store() is None:
                return None
            return self.controller.add_layer(kind)
        except Exception as err:  # noqa: BLE001
            notify_error(err)
            return None

    def delete(self, ids: list[int]) -> None:
        try:
            self.store.delete(*ids)
        except Exception as err:  # noqa: BLE001
            notify_error(err)

    def undo(self) -> None:
        if self.store is not None:
            what = in_words(self.store, self.store.undo())
            show_info(f"undone: {what}" if what else "nothing to undo")

    def labelled_planes(self) -> dict[tuple[str, int], list | None]:
        """(layer name, plane) of every open image plane with annotations → the boxes
        of its region annotations, or None when the whole plane is labelled."""
        out: dict[tuple[str, int], list | None] = {}
        if self.store is None:
            return out
        for layer in self.controller.image_layers():
            if not self.controller._matches_store(layer):
                continue
            b = self.controller.binding(layer)
            for (key, frame), plane in b.planes().items():
                items = self.store.items_of(key, frame)
                if items:
                    whole = any(it.kind in ("image", "pixels") for it in items)
                    out[(image_name(layer), plane)] = None if whole else [it.bbox() for it in items]
        return out

    def go_to(self, layer_name: str, plane: int, box: Sequence[float] | None = None) -> bool:
        """Select the layer, move the slider to ``plane`` and, for a region, centre the
        view on it and outline it in a '<image> next to label' layer."""
        import numpy as np

        from ..viewer.annotation_layers import find_image_layer

        layer = find_image_layer(self.viewer, layer_name)
        if layer is None:
            return False
        self.viewer.layers.selection.active = layer
        if self.store is None:
            return True
        b = self.controller.binding(layer)
        self.controller.go_to_plane(b, plane)
        if box is not None:
            y0, x0, y1, x1 = box
            corners = b.to_layer(plane, np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]]))
            name = f"{layer_name} next to label"
            outline = next((lyr for lyr in self.viewer.layers if lyr.name == name), None)
            if outline is None:
                outline = self.viewer.add_shapes(ndim=b.ann_ndim, name=name, edge_color="white", edge_width=2,
                                                 face_color="transparent", scale=tuple(layer.scale)[-b.ann_ndim:],
                                                 translate=tuple(layer.translate)[-b.ann_ndim:])
            outline.data = []
            outline.add_rectangles([corners], edge_color="white", face_color="transparent")
            self.controller.center_on(b, plane, ((y0 + y1) / 2, (x0 + x1) / 2))
            self.viewer.layers.selection.active = layer
        return True

    # ------------------------------------------------------------------ showing
    def _crop_changed(self, v: int) -> None:
        self.controller.crop_size = int(v)
        self.session.settings.set("annotate.crop_size", int(v))

    def _advance_changed(self, on: bool) -> None:
        self.controller.advance = bool(on)
        self.session.settings.set("annotate.advance", bool(on))

    def _store_changed(self) -> None:
        store = self.store
        if store is not None:
            self.file_label.setText(f"annotations: {store.path}" + ("  (NOT SAVED: see the notification)" if store.unsaved else ""))
        self.classes.set_store(store)
        if store is not None and self.controller.current_class in store.class_names:
            self.classes.set_current(self.controller.current_class)  # a key on an annotation layer picked it
        else:  # renamed or removed: the list's choice
            self.controller.set_current_class(self.classes.current())
        self.table.refresh(store)
        if hasattr(self, "objects"):  # built after the controller, which reports the first change
            self.objects.store_changed()
        for b in (self.save_as_button, self.export_button, self.undo_button):
            b.setEnabled(store is not None)
        self.undo_button.setToolTip((f"undo {in_words(store, store.undo_description)}" if store is not None and store.can_undo
                                     else "nothing to undo") + f" ({UNDO_SHORTCUT})")
        self._update_where()

    def _update_where(self, *_: Any) -> None:
        image = self.controller.active_image()
        if image is None or self.store is None:
            self.where.setText("")
            return
        try:
            b = self.controller.binding(image) if self.controller._matches_store(image) else None
        except Exception:  # noqa: BLE001 - e.g. an unreadable layer: just no status
            b = None
        if b is None:
            self.where.setText(f"'{image_name(image)}': not labelled yet")
            return
        plane = self.controller.plane_now(b)
        target = b.known_target(plane)
        labels = self.store.image_labels(*target) if target is not None else ()
        where = f"'{image_name(image)}'" + (f", frame {plane}" if b.n_planes > 1 else "")
        self.where.setText(f"{where}: {', '.join(labels) if labels else 'no image label'}")
