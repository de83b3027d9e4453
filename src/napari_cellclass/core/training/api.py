"""Training and fine-tuning: ``train()`` yields progress, ``fit()`` just returns the model.

>>> for event in (gen := train("scaffoldnet", "data/brightfield", epochs=8)):   # doctest: +SKIP
...     print(event.line())
>>> bundle = fit("senescence-ensemble", "data/nlo", pretrained=False)           # doctest: +SKIP

``model`` is a preset name (architecture + preprocessing + the study's recipe), an
architecture name, a :class:`ModelBundle` or a model file — the last two are
fine-tuned on a deep copy, so the caller's bundle never changes.  Any
:class:`~core.presets.TrainRecipe` field can be overridden by keyword; so can
``input_size``, ``pretrained``, ``weights``, ``multi_label``, ``output`` and
``class_balance`` ('none' | 'weights' | 'sampler').  ``stop.set()`` ends the run
at the next step and returns the best model so far.
"""

from __future__ import annotations

import copy
import os
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..models.bundle import ModelBundle
from ..presets.factory import build_model
from ..models.modelfile import load_model
from ..data import Dataset, class_weights, load_dataset, sample_weights, stratified_split
from ..data.fingerprint import data_fingerprint
from ..data.tensors import cached_inputs
from ..device import prepare_network, resolve_device
from .distributed import context, setup
from ..errors import Cancelled, CellclassError, DataError
from ..models.heads import n_outputs
from ..models.registry import arch_entry
from ..presets.studies import PRESETS, Preset
from ..presets.recipe import ARCH_RECIPE, TrainRecipe
from .events import TrainEvent, TrainResult
from .prep import head_for, hold_out_test, test_record, val_share_of_rest, with_training_means
from .intensity import default_preprocess, with_dataset_stats
from .loop import LoopData, run_loop
from .optim import Loss, classifiers, recipe_with

BUILD_OPTIONS = ("input_size", "pretrained", "weights", "multi_label", "output", "class_balance", "head")
_PREPARE_CHUNK = 64


def _copy_bundle(b: ModelBundle) -> ModelBundle:
    """A deep copy with its own lock (the lock itself cannot be copied)."""
    with b.lock:
        net = copy.deepcopy(b.network)
    return ModelBundle(net, list(b.classes), b.output, b.in_chans, b.preprocess, b.arch, list(b.channel_names),
                       None if b.thresholds is None else list(b.thresholds), copy.deepcopy(b.provenance))


def _output_for(preset: Preset | None, n_classes: int, multilabel: bool, requested: str | None) -> str:
    if requested:
        return requested
    if multilabel:
        return "sigmoid"
    if preset is not None and preset.output == "binary" and n_classes == 2:
        return "binary"
    return "softmax"


def _resolve_model(model: Any, ds: Dataset, opts: dict[str, Any]) -> tuple[ModelBundle, Preset | None, str]:
    """(bundle to train, its preset if any, where it came from)."""
    if isinstance(model, ModelBundle):
        return _adapt(_copy_bundle(model), ds, opts), PRESETS.get(model.provenance.get("preset") or ""), "bundle"
    if isinstance(model, (str, os.PathLike)) and str(model).endswith(".safetensors"):
        b = load_model(model)
        return _adapt(b, ds, opts), PRESETS.get(b.provenance.get("preset") or ""), f"model file {model}"
    if not isinstance(model, str):
        raise CellclassError(f"cannot train a {type(model).__name__}", "pass a preset or architecture name, a ModelBundle or a model file")
    preset = PRESETS.get(model)
    output = _output_for(preset, len(ds.classes), ds.multilabel, opts.get("output"))
    # an architecture name gets the intensity policy measured on its training split (core.training.intensity);
    # a preset keeps its paper's preprocessing
    pre = None if preset else default_preprocess(arch_entry(model).input_size)
    b = build_model(model, classes=ds.classes, in_chans=ds.in_chans, pretrained=opts.get("pretrained"),
                    weights=opts.get("weights"), output=output, head=head_for(model, opts.get("head")),
                    input_size=None if opts.get("input_size") is None else tuple(opts["input_size"]), preprocess=pre)
    return b, preset, f"preset {model}" if preset else f"architecture {model}"


def _adapt(b: ModelBundle, ds: Dataset, opts: dict[str, Any]) -> ModelBundle:
    """Fit a loaded bundle to the data: same classes (any order) keep the head; others get a new one."""
    size = opts.get("input_size")
    if size is not None and tuple(size) != tuple(b.input_size):
        raise CellclassError(f"input size {tuple(size)} differs from the model's {b.input_size}",
                             "a model continues at its own input size; leave input_size out")
    if opts.get("weights") is not None:
        raise CellclassError("weights= applies to a new model, not to one being fine-tuned")
    if opts.get("head") is not None:
        raise CellclassError("head options apply to a new model, not to one being fine-tuned",
                             "start from a preset or architecture name to choose the head")
    if set(ds.classes) <= set(b.classes) and ds.multilabel == b.multilabel:
        return b
    output = _output_for(None, len(ds.classes), ds.multilabel, opts.get("output"))
    outputs = n_outputs(len(ds.classes), output)
    for net in classifiers(b.network):
        net.reset_classifier(outputs)
    if hasattr(b.network, "output"):
        b.network.output = output
    b.classes, b.output, b.thresholds = list(ds.classes), output, None
    b.provenance["new_head"] = f"classifier replaced for classes {ds.classes}"
    return b


def _targets(ds: Dataset, classes: list[str]) -> np.ndarray:
    """(N, K) targets in the model's class order (the data may use a subset, in any order)."""
    y = np.zeros((len(ds), len(classes)), np.float32)
    cols = [classes.index(c) for c in ds.classes]
    y[:, cols] = ds.targets()
    return y


def _stop_fn(stop: threading.Event | Callable[[], bool] | None) -> Callable[[], bool]:
    if stop is None:
        return lambda: False
    if hasattr(stop, "is_set"):
        return stop.is_set  # type: ignore[union-attr]
    return stop  # type: ignore[return-value]


def _prepare(ds: Dataset, b: ModelBundle, dev: torch.device, stop: Callable[[], bool], what: str,
             done0: int, total: int, epochs: int) -> Generator[TrainEvent, None, tuple[torch.Tensor, np.ndarray]]:
    """Preprocess in chunks, yielding a 'start' event per chunk so long preparations show progress."""
    x, rows = None, ds.indices
    for s in range(0, len(ds), _PREPARE_CHUNK):
        x, _ = cached_inputs(ds.subset(np.arange(s, min(len(ds), s + _PREPARE_CHUNK))), b.preprocess, b.in_chans, dev, stop)
        done = done0 + min(len(ds), s + _PREPARE_CHUNK)
        yield TrainEvent("start", 0, epochs, 0, 0, None, None, {}, None, None, f"preparing {what} images {done}/{total}")
    if x is None:
        x, rows = cached_inputs(ds, b.preprocess, b.in_chans, dev, stop)
    return x, rows


def train(model: Any, data: Any, *, classes: list[str] | None = None, val_data: Any = None,
          recipe: TrainRecipe | None = None, preset: str | None = None, device: str | torch.device = "auto",
          stop: threading.Event | Callable[[], bool] | None = None, seed: int = 0, channel_axis: Any = "auto",
          **overrides: Any) -> Generator[TrainEvent, None, TrainResult]:
    """Train or fine-tune; yields :class:`TrainEvent` and returns a :class:`TrainResult`.

    The hybrid preset (``…:hybrid-svm``) is fitted, not trained: it goes to
    ``core.hybrid.train_hybrid``, which has this signature and these events.
    """
    if isinstance(model, str) and model.endswith(":hybrid-svm"):
        from .hybrid import is_hybrid_preset, train_hybrid

        if is_hybrid_preset(model):
            return (yield from train_hybrid(model, data, classes=classes, val_data=val_data, recipe=recipe,
                                            preset=preset, device=device, stop=stop, seed=seed,
                                            channel_axis=channel_axis, **overrides))
    t_start = time.perf_counter()
    opts = {k: overrides.pop(k) for k in list(overrides) if k in BUILD_OPTIONS}
    balance = opts.get("class_balance") or "none"
    if balance not in ("none", "weights", "sampler"):
        raise CellclassError(f"unknown class_balance {balance!r}", "use 'none', 'weights' or 'sampler'")
    recipe_with(recipe or ARCH_RECIPE, overrides)  # bad option names and values fail before any data is read
    ctx = context()
    dev = setup(ctx, resolve_device(device))  # under torchrun: join the process group, this rank's GPU
    should_stop = _stop_fn(stop)
    torch.manual_seed(seed)  # the random initialisation of new layers is part of the seed
    ds = load_dataset(data, classes, channel_axis=channel_axis, multi_label=opts.get("multi_label"))
    if len(ds) == 0:
        raise DataError("the training data set is empty", "add labelled images")
    bundle, preset_obj, started_from = _resolve_model(model, ds, opts)
    if preset is not None and preset not in PRESETS:
        raise CellclassError(f"unknown preset {preset!r}", f"presets: {', '.join(PRESETS)}")
    base = recipe or (PRESETS[preset].train if preset else preset_obj.train if preset_obj else ARCH_RECIPE)
    r = recipe_with(base, overrides)

    # a caller passing val_data chose its own evaluation split (the viewer's fine-tuning, k-fold):
    # the preset's test share then applies only when asked for by name
    test_fraction = r.test_fraction if val_data is None or "test_fraction" in overrides else 0.0
    rest_ds, test_ds = hold_out_test(ds, test_fraction, seed)  # never trained or selected on
    if val_data is not None:
        val_ds = load_dataset(val_data, bundle.classes if classes is None else classes, channel_axis=channel_axis,
                              multi_label=ds.multilabel)
        train_ds = rest_ds
    else:
        tr, va = stratified_split(rest_ds.labels, val_share_of_rest(r.val_fraction, test_fraction), seed)
        train_ds, val_ds = rest_ds.subset(tr), rest_ds.subset(va)
    if len(train_ds) == 0:
        raise DataError("no images left for training after the validation split", "lower val_fraction or add images")
    unknown = sorted(set(val_ds.classes) - set(bundle.classes))
    if unknown:
        raise DataError(f"validation data has classes {unknown} the model does not know")

    old_bench = torch.backends.cudnn.benchmark
    try:
        if dev.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick the fastest kernels
        prepare_network(bundle.network, dev)
        bundle.preprocess = with_training_means(train_ds, bundle.preprocess, bundle.in_chans)  # study 1's meansub
        bundle.preprocess = with_dataset_stats(train_ds, bundle.preprocess, bundle.in_chans)  # --arch default
        total = len(train_ds) + len(val_ds)
        x, train_rows = yield from _prepare(train_ds, bundle, dev, should_stop, "training", 0, total, r.epochs)
        x_val, val_rows = yield from _prepare(val_ds, bundle, dev, should_stop, "validation", len(train_ds), total, r.epochs)
        masks = masks_val = grid = None
        if bundle.is_fcn:  # heat-map targets: fluorescence-derived and/or painted (core.fcn_targets)
            from . import fcn_targets as fcn

            masks = fcn.loop_masks(train_ds, bundle.preprocess, bundle.in_chans, bundle.classes, r.fcn_target, dev,
                                   should_stop)
            if masks is not None:
                masks_val = fcn.loop_masks(val_ds, bundle.preprocess, bundle.in_chans, bundle.classes,
                                           r.fcn_target or {}, dev, should_stop) if len(val_ds) else None
                grid = fcn.output_grid(bundle.network, bundle.in_chans, bundle.input_size, dev)
        y_train = _targets(train_ds, bundle.classes)
        weight = None
        if balance == "weights":
            weight = torch.from_numpy(class_weights([list(np.flatnonzero(row)) for row in y_train], len(bundle.classes),
                                                    bundle.multilabel))
        sw = torch.from_numpy(sample_weights(train_ds.labels, len(ds.classes))) if balance == "sampler" else None
        data_t = LoopData(
            x=x, train_rows=torch.from_numpy(train_rows), x_val=x_val, val_rows=torch.from_numpy(val_rows),
            y_train=torch.from_numpy(y_train).to(dev), y_val=torch.from_numpy(_targets(val_ds, bundle.classes)).to(dev),
            masks=masks, masks_val=masks_val, grid=grid, sample_weights=sw)
        loss = Loss(bundle.output, r, weight)
        outcome = yield from run_loop(bundle.network, bundle.output, r, data_t, dev, loss, seed, should_stop, ctx)
    except Cancelled:
        from .loop import LoopOutcome

        outcome = LoopOutcome(cancelled=True)
    finally:
        torch.backends.cudnn.benchmark = old_bench

    bundle.network.eval()
    for p in bundle.network.parameters():
        p.requires_grad_(True)  # freezing is part of training only; Grad-CAM and later fine-tuning need gradients
    if bundle.multilabel and not outcome.cancelled and outcome.epochs_run > 0:
        bundle.thresholds = _dice_thresholds(bundle, x, train_rows, y_train, dev, r)
    test_metrics, held_out = None, {}
    if test_ds is not None and not outcome.cancelled:
        test_metrics, held_out = test_record(bundle, test_ds, dev, 2 * r.batch_size)
    bundle.network.to("cpu")
    bundle.provenance = {
        **{k: v for k, v in bundle.provenance.items() if k not in ("loaded_from", "training", "metrics")},
        **({"metrics": {"test": test_metrics}} if test_metrics is not None else {}),
        "training": {
            "epochs_run": outcome.epochs_run, "steps_run": outcome.steps_run, "best_epoch": outcome.best_epoch,
            **({"kept": outcome.kept} if outcome.kept else {}),
            "stopped_early": outcome.stopped_early, "cancelled": outcome.cancelled,
            "started_from": started_from, "seed": seed, "device": str(dev),
            **({"distributed": {"world_size": ctx.world_size, "backend": "nccl" if dev.type == "cuda" else "gloo"}}
               if ctx.active else {}),
            "time_s": round(time.perf_counter() - t_start, 2),
            "recipe": asdict(r), "class_balance": balance,
            "data": {"source": str(data) if isinstance(data, (str, Path)) else type(data).__name__,
                     "n_train": len(train_ds), "n_val": len(val_ds),
                     "class_counts": train_ds.class_counts(), "val_class_counts": val_ds.class_counts(),
                     "fingerprint": data_fingerprint(ds),
                     # an FCN learns painted images from their masks, not their image labels: say how many
                     **({"painted_targets": sum(train_ds.has_target_mask(i) for i in range(len(train_ds)))}
                        if bundle.is_fcn else {}),
                     **({"val_fingerprint": data_fingerprint(val_ds)} if val_data is not None else {}),
                     **held_out},
            "metrics": outcome.best_metrics,
            "history": [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in h.items()} for h in outcome.history],
        },
    }
    kind = "cancelled" if outcome.cancelled else "done"
    msg = (f"cancelled after {outcome.epochs_run} epoch(s); kept the best model so far" if outcome.cancelled
           else f"finished {outcome.epochs_run} epoch(s)" + (" (early stopping)" if outcome.stopped_early else "")
           + (f"; {outcome.kept['reason']}" if outcome.kept else ""))
    last = outcome.history[-1] if outcome.history else {}
    yield TrainEvent(kind, outcome.epochs_run, outcome.epochs_run, 0, 0, last.get("loss"), last.get("val_loss"),
                     dict(outcome.best_metrics), 0.0, outcome.best_epoch, msg)
    return TrainResult(bundle, outcome.history, outcome.cancelled, outcome.stopped_early)


@torch.no_grad()
def _dice_thresholds(bundle: ModelBundle, x: torch.Tensor, rows: np.ndarray, y: np.ndarray, dev: torch.device,
                     r: TrainRecipe) -> list[float]:
    """Per-class thresholds maximising Dice on the training images (study 5)."""
    from ..models.heads import probabilities
    from ..evaluation.thresholds import choose_thresholds

    probs = []
    bs = max(1, 2 * r.batch_size)
    for s in range(0, len(rows), bs):
        idx = torch.from_numpy(rows[s:s + bs]).to(x.device)
        probs.append(probabilities(bundle.network(x[idx].to(dev)), bundle.output).float().cpu())
    return choose_thresholds(y, torch.cat(probs).numpy(), r.threshold_step)


def fit(model: Any, data: Any, **kwargs: Any) -> ModelBundle:
    """Run :func:`train` to the end and return the trained bundle."""
    gen = train(model, data, **kwargs)
    while True:
        try:
            next(gen)
        except StopIteration as done:
            return done.value.bundle


__all__ = ["train", "fit", "TrainEvent", "TrainResult", "BUILD_OPTIONS"]
