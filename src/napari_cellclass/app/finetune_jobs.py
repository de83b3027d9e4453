"""The fine-tune panel's long-running work, as plain generators (no Qt, no napari).

* :func:`finetune_job` collects the training samples from the annotations, builds
  the starting model and runs :func:`core.finetune.finetune_steps`, yielding a
  :class:`~napari_cellclass.core.progress.Progress` with each ``TrainEvent``;
* :func:`rank_job` predicts every plane of the open images and ranks the unlabelled
  ones by uncertainty (:mod:`core.active`).
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any, TYPE_CHECKING

import numpy as np

from ..core.progress import Progress, relay
from .jobs import Request
from .session import ModelChoice, Session

if TYPE_CHECKING:
    from ..core.training.events import TrainEvent
    from ..core.annotations import AnnotationStore
    from ..core.training.finetune import FineTuneOptions


@dataclass(frozen=True)
class StartChoice:
    """Where a fine-tune starts: the session's model, a preset, or an architecture."""

    kind: str  # "model" | "preset" | "scratch"
    name: str | None = None

    @property
    def label(self) -> str:
        return {"model": "the session's model", "preset": f"preset {self.name} (fresh weights)",
                "scratch": f"{self.name} from scratch"}[self.kind]


def _progress(event: TrainEvent) -> tuple[int, int]:
    # TrainEvent counts optimisation steps over the whole run (all epochs and stages)
    total = max(1, int(event.steps or 0))
    return min(int(event.step or 0), total), total


def finetune_job(session: Session, store: AnnotationStore, start: StartChoice, options: FineTuneOptions, stop: threading.Event,
                 kinds: Sequence[str] | None = None) -> Generator[Progress, None, Any]:
    """Fine-tune on ``store``'s annotations; yields ``Progress(item=TrainEvent)``, returns
    a :class:`core.finetune.FineTuneOutcome` whose bundle carries the annotation
    file's sha256 in its provenance."""
    from ..core.annotations import training_samples
    from ..core.annotations.export import KINDS_ALL
    from ..core.training.finetune import finetune_steps, in_chans_of, start_model

    yield Progress(0, 0, message="collecting the labelled samples")
    samples = training_samples(store, tuple(kinds) if kinds else KINDS_ALL)
    items = [s.as_tuple() for s in samples]
    classes = store.class_names
    in_chans = in_chans_of(items)
    label = start.label
    bundle = None
    if start.kind == "model":
        yield Progress(0, 0, message=f"loading {session.choice.label}")
        bundle = session.load()
        label = f"{session.choice.label}" + (f" ({session.choice.path})" if session.choice.path else "")
    yield Progress(0, 0, message=f"preparing {label} for {len(classes)} classes")
    model = start_model(start.kind, start.name, classes, in_chans, multilabel=store.multilabel, bundle=bundle,
                        input_size=getattr(options, "input_size", None), seed=options.seed)
    yield Progress(0, 0, message=f"training on {len(items)} labelled samples")
    gen = finetune_steps(model, items, classes, options, stop=stop, device=session.device,
                         annotations=store.path, start_label=label)
    with closing(gen):
        return (yield from relay(gen, _panel_report))


def _panel_report(event: TrainEvent) -> Progress:
    """A training report as the panel shows it: the overall bar and one readable line."""
    done_n, total = _progress(event)
    msg = event.message or ""
    if event.kind == "epoch":
        loss = f"loss {event.loss:.3f}" if event.loss is not None else ""
        val = f", val loss {event.val_loss:.3f}" if event.val_loss is not None else ""
        msg = f"epoch {event.epoch}/{event.epochs}: {loss}{val}" + (f" ({msg})" if msg else "")
    elif event.kind == "step":
        msg = f"epoch {event.epoch}/{event.epochs}, step {event.step}/{event.steps}" + (f" ({msg})" if msg else "")
    return Progress(done_n, total, item=event, message=msg)


Box = tuple[float, float, float, float]  # y0, x0, y1, x1 in image pixels


@dataclass
class RankedPlanes:
    """Every plane (or tile) that was scored, most uncertain first (labelled ones left out)."""

    keys: list[tuple[str, int, Box | None]]  # (layer name, plane, tile box or None for the whole plane)
    scores: list[float]
    method: str
    model: str
    methods: tuple[str, ...] = ()  # the scores that fit the model (core.active.methods_for), default first
    background: int = 0  # tiles left out as empty background (core.annotations.background)


def boxes_overlap(a: Box, b: Box) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def _score_tiles(bundle: Any, req: Request, layout: Any, frame: int, tile: int, members: bool, options: Any
                 ) -> tuple[list[Box], np.ndarray, list[bool]]:
    """(tile boxes, their probabilities, which are empty background) of one plane."""
    from ..core.annotations.background import background_tiles
    from ..core.inference.predict import predict, predict_members
    from ..core.inference.tiling import tile_grid
    from ..core.io.images import get_plane

    grid = tile_grid((layout.height, layout.width), tile, overlap=0.0)  # edge tiles pulled inside
    th, tw = grid.tile_hw
    boxes = [(float(y), float(x), float(y + th - 1), float(x + tw - 1)) for y in grid.ys for x in grid.xs]
    crops = [get_plane(req.source.data, layout, frame, req.info.name,
                       region=(slice(int(b[0]), int(b[2]) + 1), slice(int(b[1]), int(b[3]) + 1)), native=True)
             for b in boxes]
    if members:  # (M, tiles, K) -> one (M, K) row per tile, as the records give them
        p = predict_members(bundle, crops, options=options).transpose(1, 0, 2)
    else:
        p = predict(bundle, crops, options=options)
    return boxes, p, background_tiles(crops)  # blank tiles are often the most uncertain: not worth labelling


def rank_job(session: Session, requests: Sequence[Request], labelled: dict[tuple[str, int], list[Box] | None],
             method: str | None = "margin", batch_size: int = 16, tile: int | None = None
             ) -> Generator[Progress, None, RankedPlanes]:
    """Predict every plane of ``requests`` (or, with ``tile``, every tile x tile region
    of each plane) with the session's model and rank what is not labelled yet by
    uncertainty.  ``labelled`` maps (layer name, plane) to the boxes of its region
    annotations, or None when the whole plane has a label.

    ``method`` must fit the model (:func:`core.active.methods_for`); otherwise, or
    when None, the model's default is used: its members' disagreement for an
    ensemble, which then predicts every member's probabilities."""
    from ..core.annotations.active import ENSEMBLE_METHODS, methods_for, rank
    from ..core.errors import DataError
    from ..core.io.images import inspect
    from ..core.inference.options import RunOptions
    from ..core.inference.predict import ensemble_size, predict_records

    from .jobs import load_bundle, model_id

    bundle, model = yield from load_bundle(session)
    offered = methods_for(bundle.multilabel, ensemble_size(bundle))
    method = method if method in offered else offered[0]
    members = method in ENSEMBLE_METHODS
    keys: list[tuple[str, int, Box | None]] = []
    probs: list[np.ndarray] = []
    layouts = []
    for req in requests:
        layout, _ = inspect(req.source.data, "auto", bundle.in_chans, req.source.rgb, req.info.name)
        layouts.append(layout)
    total = sum(lay.n_frames for lay in layouts)
    yield Progress(0, total, message="scoring the open images" + (f" in {tile} px tiles" if tile else ""))
    done = 0
    blank: list[bool] = []  # per key: empty background (tiles only)
    run, crops_run = RunOptions(device=session.device, batch_size=batch_size), RunOptions(
        device=session.device, batch_size=batch_size, channel_axis=0)  # crops are cut channel-first
    for req, layout in zip(requests, layouts):
        if not tile:
            records = predict_records(bundle, req.source, members=members, options=run)
            with closing(records):
                for rec in records:
                    keys.append((req.info.name, int(rec.frame), None))
                    blank.append(False)
                    probs.append(rec.probs)
                    done += 1
                    yield Progress(done, total)
            continue
        for frame in range(layout.n_frames):
            boxes, p, flat = _score_tiles(bundle, req, layout, frame, tile, members, crops_run)
            keys += [(req.info.name, frame, b) for b in boxes]
            blank += flat
            probs += list(p)
            done += 1
            yield Progress(done, total)
    if not keys:
        raise DataError("no image to rank", "open images (or a folder as a stack) first")

    def is_labelled(key: tuple[str, int, Box | None]) -> bool:
        if (key[0], key[1]) not in labelled:
            return False
        regions = labelled[(key[0], key[1])]
        if key[2] is None or regions is None:
            return True
        return any(boxes_overlap(key[2], r) for r in regions)

    thresholds = bundle.class_thresholds() if method == "threshold" else None
    scored = np.stack(probs)
    if members:
        scored = scored.transpose(1, 0, 2)  # rows (N, M, K) -> members first, as core.active takes them
    ranking = rank(scored, method, keys=keys, exclude=[is_labelled(k) or b for k, b in zip(keys, blank)],
                   thresholds=thresholds)
    return RankedPlanes(list(ranking.keys), [float(ranking.scores[i]) for i in ranking.order], ranking.method,
                        model_id(session.choice if isinstance(session.choice, ModelChoice) else ModelChoice("default")),
                        offered, sum(b and not is_labelled(k) for k, b in zip(keys, blank)))
