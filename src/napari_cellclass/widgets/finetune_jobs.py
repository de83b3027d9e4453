"""The fine-tune panel's long-running work, as plain generators (no Qt, no napari).

* :func:`finetune_job` collects the training samples from the annotations, builds
  the starting model and runs :func:`core.finetune.finetune_steps`, yielding a
  :class:`~.jobs.Step` with each ``TrainEvent``;
* :func:`rank_job` predicts every plane of the open images and ranks the unlabelled
  ones by uncertainty (:mod:`core.active`).
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import numpy as np

from .jobs import Request, Step
from .session import ModelChoice, Session


@dataclass(frozen=True)
class StartChoice:
    """Where a fine-tune starts: the session's model, a preset, or an architecture."""

    kind: str  # "model" | "preset" | "scratch"
    name: str | None = None

    @property
    def label(self) -> str:
        return {"model": "the session's model", "preset": f"preset {self.name} (fresh weights)",
                "scratch": f"{self.name} from scratch"}[self.kind]


def _progress(event: Any) -> tuple[int, int]:
    # TrainEvent counts optimisation steps over the whole run (all epochs and stages)
    total = max(1, int(event.steps or 0))
    return min(int(event.step or 0), total), total


def finetune_job(session: Session, store: Any, start: StartChoice, options: Any, stop: threading.Event,
                 kinds: Sequence[str] | None = None) -> Generator[Step, None, Any]:
    """Fine-tune on ``store``'s annotations; yields ``Step(item=TrainEvent)``, returns
    a :class:`core.finetune.FineTuneOutcome` whose bundle carries the annotation
    file's sha256 in its provenance."""
    from ..core.annotations import training_samples
    from ..core.annotations.export import KINDS_ALL
    from ..core.finetune import finetune_steps, in_chans_of, start_model

    yield Step(0, 0, message="collecting the labelled samples")
    samples = training_samples(store, tuple(kinds) if kinds else KINDS_ALL)
    items = [s.as_tuple() for s in samples]
    classes = store.class_names
    in_chans = in_chans_of(items)
    label = start.label
    bundle = None
    if start.kind == "model":
        yield Step(0, 0, message=f"loading {session.choice.label}")
        bundle = session.load()
        label = f"{session.choice.label}" + (f" ({session.choice.path})" if session.choice.path else "")
    yield Step(0, 0, message=f"preparing {label} for {len(classes)} classes")
    model = start_model(start.kind, start.name, classes, in_chans, multilabel=store.multilabel, bundle=bundle,
                        input_size=getattr(options, "input_size", None))
    yield Step(0, 0, message=f"training on {len(items)} labelled samples")
    gen = finetune_steps(model, items, classes, options, stop=stop, device=session.device,
                         annotations=store.path, start_label=label)
    with closing(gen):
        while True:
            try:
                event = next(gen)
            except StopIteration as done:
                return done.value
            done_n, total = _progress(event)
            msg = event.message or ""
            if event.kind == "epoch":
                loss = f"loss {event.loss:.3f}" if event.loss is not None else ""
                val = f", val loss {event.val_loss:.3f}" if event.val_loss is not None else ""
                msg = f"epoch {event.epoch}/{event.epochs}: {loss}{val}" + (f" ({msg})" if msg else "")
            elif event.kind == "step":
                msg = f"epoch {event.epoch}/{event.epochs}, step {event.step}/{event.steps}" + (f" ({msg})" if msg else "")
            yield Step(done_n, total, item=event, message=msg)


@dataclass
class RankedPlanes:
    """Every plane that was scored, most uncertain first (labelled ones left out)."""

    keys: list[tuple[str, int]]  # (layer name, plane)
    scores: list[float]
    method: str
    model: str


def rank_job(session: Session, requests: Sequence[Request], labelled: set[tuple[str, int]],
             method: str = "margin", batch_size: int = 16) -> Generator[Step, None, RankedPlanes]:
    """Predict every plane of ``requests`` with the session's model and rank the
    planes not in ``labelled`` ((layer name, plane)) by uncertainty."""
    from ..core.active import rank
    from ..core.errors import DataError
    from ..core.predict import predict_records

    from .jobs import _load, model_id

    bundle, model = yield from _load(session)
    keys: list[tuple[str, int]] = []
    probs: list[np.ndarray] = []
    total = 0
    for req in requests:
        shape = req.info.shape[:-1] if req.info.rgb else req.info.shape
        total += int(shape[0]) if len(shape) > 2 else 1
    yield Step(0, total, message="scoring the open images")
    for req in requests:
        records = predict_records(bundle, req.source, batch_size, session.device)
        with closing(records):
            for rec in records:
                keys.append((req.info.name, int(rec.frame)))
                probs.append(rec.probs)
                yield Step(len(keys), total)
    if not keys:
        raise DataError("no image to rank", "open images (or a folder as a stack) first")
    thresholds = bundle.class_thresholds() if bundle.multilabel else None
    ranking = rank(np.stack(probs), method if not bundle.multilabel else "threshold", keys=keys,
                   exclude=set(labelled), thresholds=thresholds)
    return RankedPlanes(list(ranking.keys), [float(ranking.scores[i]) for i in ranking.order], ranking.method,
                        model_id(session.choice if isinstance(session.choice, ModelChoice) else ModelChoice("default")))
