"""'What to label next': rank the open images' unlabelled planes by the model's
uncertainty and step through them, most uncertain first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TYPE_CHECKING

from napari.utils.notifications import show_info
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout, QWidget

from ..core.annotations.active import methods_for
from ..app.finetune_jobs import RankedPlanes, boxes_overlap, rank_job
from ..app.jobs import make_request
from .runner import JobControls
from ..app.session import Session

if TYPE_CHECKING:
    from napari import Viewer


_SETTING = {False: "annotate.rank_method", True: "annotate.rank_method_ensemble"}


class NextToLabel(QWidget):
    """Rank button (a job with progress and cancel) and a 'next most uncertain' button.

    The scores offered follow the session's model: an ensemble adds (and defaults
    to) its members' disagreement.  Single models and ensembles remember their
    last score separately, so picking margin once does not hide disagreement."""

    def __init__(self, viewer: Viewer, session: Session, labelled: Callable[[], dict],
                 go: Callable[[str, int, Any], bool], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer, self.session = viewer, session
        self._labelled, self._go = labelled, go
        self.method = QComboBox()
        self._ensemble: bool | None = None  # whether the offered scores are an ensemble's; None: model not loaded
        self._offer(methods_for(False), None)
        self.unit = QComboBox()
        self.unit.addItems(["images and frames", "regions (tiles)"])
        self.tile = QSpinBox()
        self.tile.setRange(16, 4096)
        self.tile.setValue(int(session.settings.get("annotate.rank_tile", 64)))
        self.tile.setSuffix(" px")
        self.tile.setMinimumWidth(90)
        self.controls = JobControls("Rank by uncertainty")
        self.next_button = QPushButton("Next most uncertain")
        self.next_button.setEnabled(False)
        self.info = QLabel("")
        self.info.setWordWrap(True)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("score"))
        row.addWidget(self.method, 1)
        row.addWidget(self.unit, 1)
        row.addWidget(self.tile)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.controls)
        layout.addWidget(self.next_button)
        layout.addWidget(self.info)
        self.ranking: RankedPlanes | None = None
        self._visited: set[tuple[str, int]] = set()
        self.controls.run_requested.connect(self.rank)
        self.next_button.clicked.connect(self.next)
        self.method.currentTextChanged.connect(self._method_picked)
        for signal in (session.choice_changed, session.model_loaded, session.fine_tuned_changed):
            signal.connect(self._model_changed)
        self.destroyed.connect(lambda *_: self._disconnect(session))
        self._model_changed()
        self.tile.valueChanged.connect(lambda v: session.settings.set("annotate.rank_tile", int(v)))
        self.unit.currentIndexChanged.connect(lambda i: self.tile.setEnabled(i == 1))
        self.tile.setEnabled(False)

    def _disconnect(self, session: Session) -> None:
        for signal in (session.choice_changed, session.model_loaded, session.fine_tuned_changed):
            signal.disconnect(self._model_changed)

    def _offer(self, methods: tuple[str, ...], ensemble: bool | None) -> None:
        """List ``methods``, showing the one last picked for this kind of model."""
        self._ensemble = ensemble
        saved = self.session.settings.get(_SETTING[bool(ensemble)], methods[0])
        self.method.blockSignals(True)
        self.method.clear()
        self.method.addItems(list(methods))
        self.method.setCurrentText(saved if saved in methods else methods[0])
        self.method.blockSignals(False)

    def _model_changed(self, *_: Any) -> None:
        # only a loaded model tells; loading here would block the main thread
        bundle = self.session.cached()
        if bundle is None:
            self._ensemble = None  # unknown until loaded: the rank job then uses the model's default
            return
        from ..core.inference.predict import ensemble_size

        members = ensemble_size(bundle)
        methods = methods_for(bundle.multilabel, members)
        if self._ensemble != (members > 1) or tuple(self.methods()) != methods:
            self._offer(methods, members > 1)

    def _method_picked(self, method: str) -> None:
        if method:
            self.session.settings.set(_SETTING[bool(self._ensemble)], method)

    def methods(self) -> list[str]:
        """The scores offered now."""
        return [self.method.itemText(i) for i in range(self.method.count())]

    def rank(self, session: Session | None = None, job: Callable[..., Any] | None = None) -> Any:
        """Rank with the session's model, or ``session``'s (live mode previews a model not kept yet;
        its ``job`` reuses features)."""
        from ..viewer.layers import image_layers

        layers = image_layers(self.viewer)
        if not layers:
            show_info("What to label next: open images (or a folder as a stack) first")
            return None
        requests = [make_request(self.viewer, layer) for layer in layers]
        tile = self.tile.value() if self.unit.currentIndex() == 1 else None
        self._model_changed()
        # before the model is loaded the panel cannot know its scores: let the job pick the model's default
        method = self.method.currentText() if self._ensemble is not None else None
        return self.controls.start(job or rank_job, session or self.session, requests, self._labelled(), method,
                                   tile=tile, desc="rank by uncertainty", on_done=self._ranked)

    def _ranked(self, ranking: RankedPlanes) -> None:
        self.ranking, self._visited = ranking, set()
        self._model_changed()  # the job has loaded the model: offer its scores, showing the one used
        if ranking.method in self.methods():
            self.method.setCurrentText(ranking.method)
        self.next_button.setEnabled(bool(ranking.keys))
        what = "region(s)" if ranking.keys and ranking.keys[0][2] is not None else "plane(s)"
        blank = f"; {ranking.background} empty background tile(s) left out" if ranking.background else ""
        self.info.setText(f"{len(ranking.keys)} unlabelled {what} ranked by {ranking.method} with {ranking.model}{blank}")

    def remaining(self) -> list[tuple[str, int, Any]]:
        if self.ranking is None:
            return []
        labelled = self._labelled()

        def done(key: tuple[str, int, Any]) -> bool:
            if key in self._visited:
                return True
            if (key[0], key[1]) not in labelled:
                return False
            boxes = labelled[(key[0], key[1])]
            return key[2] is None or boxes is None or any(boxes_overlap(key[2], b) for b in boxes)

        return [k for k in self.ranking.keys if not done(k)]

    def next(self) -> tuple[str, int, Any] | None:
        """Go to the most uncertain plane (or region) not labelled, nor shown by this button, yet."""
        for key in self.remaining():
            self._visited.add(key)
            if self._go(*key):
                i = self.ranking.keys.index(key)  # type: ignore[union-attr]
                left = len(self.remaining())
                where = f"'{key[0]}' plane {key[1]}" + (f", rows {key[2][0]:.0f}–{key[2][2]:.0f}, columns "
                                                        f"{key[2][1]:.0f}–{key[2][3]:.0f}" if key[2] else "")
                self.info.setText(f"{where}: uncertainty {self.ranking.scores[i]:.2f} ({left} more to go)")  # type: ignore[union-attr]
                return key
        self.info.setText("every ranked plane is labelled or was shown; rank again after fine-tuning")
        self.next_button.setEnabled(False)
        return None
