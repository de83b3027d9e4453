"""The middle of a run: turn the plan's splits into network-ready tensors (with their
FCN targets and class balance) and hand them to the loop."""

from __future__ import annotations

from collections.abc import Callable, Generator

import numpy as np
import torch

from ..data import Dataset, class_weights, sample_weights
from ..data.tensors import cached_inputs
from ..device import prepare_network
from ..errors import Cancelled
from ..models.bundle import ModelBundle
from . import feature_cache
from .distributed import DistContext
from .events import TrainEvent
from .loop import LoopData, LoopOutcome, run_loop
from .optim import Loss
from .plan import TrainPlan, targets
from .intensity import with_dataset_stats
from .prep import with_training_means

_PREPARE_CHUNK = 64


def fit_network(
    plan: TrainPlan, dev: torch.device, stop: Callable[[], bool], seed: int, ctx: DistContext
) -> Generator[TrainEvent, None, tuple[LoopOutcome, LoopData | None]]:
    """Train ``plan.bundle`` in place; return the loop's outcome and the tensors it trained on."""
    bundle, r = plan.bundle, plan.recipe
    old_bench = torch.backends.cudnn.benchmark
    data_t = None
    try:
        if dev.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick the fastest kernels
        prepare_network(bundle.network, dev)
        bundle.preprocess = with_training_means(plan.train, bundle.preprocess, bundle.in_chans)  # study 1's meansub
        bundle.preprocess = with_dataset_stats(plan.train, bundle.preprocess, bundle.in_chans)  # --arch default
        data_t = yield from _loop_data(plan, dev, stop)
        loss = Loss(bundle.output, r, _class_weight(plan))
        # head-only runs train on cached backbone features (training.feature_cache)
        net, r_loop, d_loop, note = feature_cache.loop_inputs(bundle.network, r, data_t, dev, seed, ctx)
        yield TrainEvent(kind="start", epoch=0, epochs=r.epochs, total=0, message=f"backbone features {note}")
        outcome = yield from run_loop(net, bundle.output, r_loop, d_loop, dev, loss, seed, stop, ctx)
    except Cancelled:
        outcome = LoopOutcome(cancelled=True)
    finally:
        torch.backends.cudnn.benchmark = old_bench
    bundle.network.eval()
    for p in bundle.network.parameters():
        p.requires_grad_(True)  # freezing is part of training only; Grad-CAM and later fine-tuning need gradients
    return outcome, data_t


def _loop_data(plan: TrainPlan, dev: torch.device, stop: Callable[[], bool]) -> Generator[TrainEvent, None, LoopData]:
    bundle, r = plan.bundle, plan.recipe
    total = len(plan.train) + len(plan.val)
    x, train_rows = yield from _prepare(plan.train, bundle, dev, stop, "training", 0, total, r.epochs)
    x_val, val_rows = yield from _prepare(plan.val, bundle, dev, stop, "validation", len(plan.train), total, r.epochs)
    masks = masks_val = grid = None
    if bundle.is_fcn:  # heat-map targets: fluorescence-derived and/or painted (training.fcn_targets)
        from . import fcn_targets as fcn

        masks = fcn.loop_masks(plan.train, bundle.preprocess, bundle.in_chans, bundle.classes, r.fcn_target, dev, stop)
        if masks is not None:
            masks_val = (
                fcn.loop_masks(
                    plan.val, bundle.preprocess, bundle.in_chans, bundle.classes, r.fcn_target or {}, dev, stop
                )
                if len(plan.val)
                else None
            )
            grid = fcn.output_grid(bundle.network, bundle.in_chans, bundle.input_size, dev)
    sw = None
    if plan.build.class_balance == "sampler":
        sw = torch.from_numpy(sample_weights(plan.train.labels, len(plan.data.classes)))
    return LoopData(
        x=x,
        train_rows=torch.from_numpy(train_rows),
        x_val=x_val,
        val_rows=torch.from_numpy(val_rows),
        y_train=torch.from_numpy(targets(plan.train, bundle.classes)).to(dev),
        y_val=torch.from_numpy(targets(plan.val, bundle.classes)).to(dev),
        masks=masks,
        masks_val=masks_val,
        grid=grid,
        sample_weights=sw,
    )


def _class_weight(plan: TrainPlan) -> torch.Tensor | None:
    if plan.build.class_balance != "weights":
        return None
    y = targets(plan.train, plan.bundle.classes)
    return torch.from_numpy(
        class_weights([list(np.flatnonzero(row)) for row in y], len(plan.bundle.classes), plan.bundle.multilabel)
    )


def _prepare(
    ds: Dataset,
    b: ModelBundle,
    dev: torch.device,
    stop: Callable[[], bool],
    what: str,
    done0: int,
    total: int,
    epochs: int,
) -> Generator[TrainEvent, None, tuple[torch.Tensor, np.ndarray]]:
    """Preprocess in chunks, yielding a 'start' event per chunk so long preparations show progress."""
    x, rows = None, ds.indices
    for s in range(0, len(ds), _PREPARE_CHUNK):
        x, _ = cached_inputs(
            ds.subset(np.arange(s, min(len(ds), s + _PREPARE_CHUNK))), b.preprocess, b.in_chans, dev, stop
        )
        done = done0 + min(len(ds), s + _PREPARE_CHUNK)
        yield TrainEvent(
            kind="start", epoch=0, epochs=epochs, total=0, message=f"preparing {what} images {done}/{total}"
        )
    if x is None:
        x, rows = cached_inputs(ds, b.preprocess, b.in_chans, dev, stop)
    return x, rows
