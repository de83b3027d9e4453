"""The Annotate dock's 'segmented objects' box: pick a Labels layer as objects, click
objects to label them with the current class, and step through the objects the model
is least sure of (select + centre), most uncertain first."""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout, QWidget

from ..app.object_jobs import ObjectOutcome, ObjectRequest, object_job
from ..viewer.object_annotation import ObjectClicks
from ..viewer.object_layers import go_to_object, outline_object
from .classify_objects import ObjectsCombo
from .runner import JobControls, notify_error

#: the scores an object table's (N, K) probabilities support (no ensemble members per object)
OBJECT_METHODS = ("margin", "least_confidence", "entropy", "threshold")


class ObjectAnnotator(QWidget):
    """Objects picker, crop margin, 'Rank objects' (a job) and 'Next object'."""

    def __init__(self, dock: Any) -> None:
        super().__init__()
        self.dock, self.viewer, self.session = dock, dock.viewer, dock.session
        settings = self.session.settings
        self.labels = ObjectsCombo(self.viewer)
        self.margin = QSpinBox()
        self.margin.setRange(0, 512)
        self.margin.setSuffix(" px")
        self.margin.setToolTip("pixels around each object's box in its training crop (as Classify's margin)")
        self.margin.setValue(int(settings.get("annotate.object_margin", settings.get("objects.margin", 4))))
        self.controls = JobControls("Rank objects by uncertainty")
        self.next_button = QPushButton("Next uncertain object")
        self.next_button.setEnabled(False)
        self.info = QLabel("pick a Labels layer of segmented cells, then click a cell to label it with the current class")
        self.info.setWordWrap(True)
        self.clicks = ObjectClicks(self.viewer, dock.controller, self.info.setText, notify_error,
                                   dock.classes.set_current)
        self.ranked: list[tuple[int, int, float]] = []
        self._centroids: dict[tuple[int, int], tuple[float, float]] = {}
        self._boxes: dict[tuple[int, int], tuple[int, int, int, int]] = {}
        self._shown: set[tuple[int, int]] = set()
        self._build()
        self.labels.currentIndexChanged.connect(self._picked)
        self.margin.valueChanged.connect(self._margin_changed)
        self.controls.run_requested.connect(self.rank)
        self.next_button.clicked.connect(self.next)
        self.destroyed.connect(lambda *_: (self.labels.unwatch(), self.clicks.close()))
        self._margin_changed(self.margin.value())
        self._picked()

    def _build(self) -> None:
        row = QHBoxLayout()
        row.addWidget(QLabel("objects"))
        row.addWidget(self.labels, 1)
        row.addWidget(QLabel("margin"))
        row.addWidget(self.margin)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.controls)
        layout.addWidget(self.next_button)
        layout.addWidget(self.info)

    def _picked(self, *_: Any) -> None:
        layer = self.labels.layer()
        self.clicks.set_layer(layer)
        self.controls.setEnabled(layer is not None)
        if layer is not None and self.dock.store is not None:
            self.store_changed()
        self.ranked, self._shown = [], set()
        self.next_button.setEnabled(False)
        if layer is not None:
            self.dock.ensure_store()
            self.info.setText(f"click a cell of '{layer.name}' (pan/zoom mode) to label it with the current class; "
                              "keys 1–9 pick the class and relabel the last clicked cell")

    def store_changed(self) -> None:
        """The annotations changed (a click, undo, delete, another file): redraw the labelled objects."""
        try:
            self.clicks.show()
        except Exception as err:  # noqa: BLE001 - e.g. an edited layer that no longer fits
            notify_error(err)

    def _margin_changed(self, v: int) -> None:
        self.clicks.margin = int(v)
        self.session.settings.set("annotate.object_margin", int(v))

    def click(self, world: Any) -> Any:
        """Label the object under a world point (what a mouse click does); the item or None."""
        try:
            return self.clicks.click(world)
        except Exception as err:  # noqa: BLE001
            notify_error(err)
            return None

    # ------------------------------------------------------------------ what next
    def rank(self) -> Any:
        """Classify every object with the session's model and rank the unlabelled ones."""
        layer = self.labels.layer()
        image = self.clicks.image_layer() if layer is not None else None
        if layer is None or image is None:
            self.info.setText("pick a Labels layer and open the image it segments first")
            return None
        request = ObjectRequest(image.data, image.name, getattr(image, "rgb", None), layer.data, layer.name,
                                self.margin.value(), False)
        return self.controls.start(object_job, self.session, request, desc="rank objects", on_done=self._ranked)

    def _method(self) -> str:
        picked = self.dock.next.method.currentText()
        return picked if picked in OBJECT_METHODS else "margin"

    def _ranked(self, outcome: ObjectOutcome) -> None:
        from ..core.annotations.objects import rank_objects

        self.ranked = rank_objects(outcome.table, self._method())
        self._centroids = {(r.box.frame, r.box.label): r.box.centroid for r in outcome.table.rows}
        self._boxes = {(r.box.frame, r.box.label): r.box.bbox for r in outcome.table.rows}
        self._shown = set()
        left = self.remaining()
        self.next_button.setEnabled(bool(left))
        self.info.setText(f"{len(left)} unlabelled object(s) ranked by {self._method()} with {outcome.model}")

    def labelled(self) -> set[tuple[int, int]]:
        from ..core.annotations.objects import labelled_objects

        if self.dock.store is None or self.clicks.layer is None:
            return set()
        return set(labelled_objects(self.dock.store, self.clicks.source()))

    def remaining(self) -> list[tuple[int, int, float]]:
        done = self.labelled() | self._shown
        return [r for r in self.ranked if r[:2] not in done]

    def next(self) -> tuple[int, int, float] | None:
        """Select and centre the most uncertain object not labelled, nor shown by this button, yet."""
        left = self.remaining()
        layer = self.clicks.layer
        if not left or layer is None or layer not in self.viewer.layers:
            self.info.setText("every ranked object is labelled or was shown; rank again after fine-tuning")
            self.next_button.setEnabled(False)
            return None
        frame, label, score = left[0]
        self._shown.add((frame, label))
        go_to_object(self.viewer, layer, frame, label, self._centroids[(frame, label)])
        outline_object(self.viewer, layer, frame, self._boxes[(frame, label)])
        self.viewer.layers.selection.active = layer  # the next click labels it
        self.info.setText(f"object {label}" + (f" of frame {frame}" if layer.ndim >= 3 else "")
                          + f": uncertainty {score:.2f} ({len(left) - 1} more to go); click it to label it")
        return left[0]
