"""Fine-tune a model on annotations: what the viewer's fine-tune panel runs, headless.

>>> steps = finetune_steps(bundle, training_samples(store), store.class_names,
...                        FineTuneOptions(epochs=2), annotations=store.path)   # doctest: +SKIP
>>> for event in steps: ...                     # core.train.TrainEvent per step/epoch
>>> outcome = steps.value                        # doctest: +SKIP  (or `yield from`)

The starting model is adapted to the annotation classes (a new head when they
differ), the labelled samples are split once into training and validation items
(stratified; or k folds), and :func:`core.train.train` does the training.  The
starting model and the tuned one are then evaluated on the *same* validation items,
so "before" and "after" are comparable.  The input bundle is never modified.

Cancelling (``stop.set()``) keeps the best model so far: ``core.train`` returns a
valid bundle even after a partial first epoch, and it is evaluated like a finished one.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Generator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomicfile import file_sha256
from ..errors import DataError
from ..models.feature_store import copy_network
from ..presets.recipe import TrainRecipe
from ..progress import drain, relay

#: ways to start: the given model, a preset with fresh weights, or an architecture from scratch
START_KINDS = ("model", "preset", "scratch")


@dataclass(frozen=True)
class FineTuneOptions:
    """What the panel's fine-tune section offers (every field has a safe default)."""

    epochs: int = 5
    lr: float = 1e-3
    batch_size: int = 16
    freeze_fraction: float = 0.0  # freeze this leading fraction of the backbone
    two_stage: bool = False  # head only first, then everything at lr / 10
    augment: bool = True  # flips and 90° rotations (orientation carries no class information in cells)
    val_fraction: float = 0.25
    folds: int = 0  # k-fold instead of one split (k models; the best fold's model is kept)
    seed: int = 0
    input_size: tuple[int, int] | None = None  # None: the model's own
    feature_cache: bool = True  # head-only runs train on cached backbone features (training.feature_cache)
    cache_views: int = 2  # identity + flip (at most 2 forwards per label); 0: every view the augmentation reaches
    stable_split: bool = False  # validation items chosen by name (data.splits.stable_split): live mode's retrains

    def check(self) -> None:
        if self.epochs < 1:
            raise DataError(f"epochs must be at least 1, got {self.epochs}", "train for 1 epoch or more")
        if not self.lr > 0:
            raise DataError(f"learning rate must be positive, got {self.lr}", "e.g. 1e-3 from scratch, 1e-4 to fine-tune")
        if not 0.0 <= self.freeze_fraction <= 1.0:
            raise DataError(f"frozen fraction must lie in [0, 1], got {self.freeze_fraction}",
                            "0 trains every layer, 1 the head only")
        if self.folds == 1 or self.folds < 0:
            raise DataError(f"k-fold needs at least 2 folds, got {self.folds}", "use 0 for one validation split")
        if self.folds == 0 and not 0.0 < self.val_fraction < 1.0:
            raise DataError(f"validation fraction must lie in (0, 1), got {self.val_fraction}",
                            "hold out e.g. 0.25 of the labels to measure the model")

    def recipe(self, base: TrainRecipe | None = None) -> TrainRecipe:
        """The training recipe: ``base`` (the starting model's preset recipe, else the default)
        with what the panel sets; ``input_size`` is settled when the starting model is made."""
        from ..data.augment import Augment
        from ..presets.recipe import Stage
        from .optim import recipe_with

        stages: tuple[Stage, ...] = ()
        if self.two_stage:
            first = max(1, self.epochs // 2)
            stages = (Stage("head", self.lr, first), Stage("all", self.lr / 10, max(1, self.epochs - first)))
        return recipe_with(base or TrainRecipe(), {
            "epochs": int(self.epochs), "lr": float(self.lr), "batch_size": int(self.batch_size),
            "freeze_fraction": float(self.freeze_fraction), "keep_best": True,
            "feature_cache": bool(self.feature_cache), "cache_views": int(self.cache_views),
            "augment": Augment(hflip=True, vflip=True, rot90=True) if self.augment else Augment(),
            **({"stages": stages} if stages else {})})


@dataclass
class FineTuneOutcome:
    """The tuned model and how it compares with the model it started from."""

    bundle: Any  # ModelBundle: the new model (best epoch; best fold with k-fold)
    start: Any  # ModelBundle: the starting model, adapted to the annotation classes
    history: list[dict]
    cancelled: bool
    before: dict | None  # metrics of ``start`` on the validation items
    after: dict | None  # metrics of ``bundle`` on the same items (out-of-fold with k-fold)
    n_train: int
    n_val: int
    classes: list[str]
    folds: int = 0
    fold_metrics: list[dict] = field(default_factory=list)


# ---------------------------------------------------------------------------- pieces
def start_model(kind: str, name: str | None, classes: Sequence[str], in_chans: int, *, multilabel: bool = False,
                bundle: Any = None, input_size: tuple[int, int] | None = None, seed: int = 0) -> Any:
    """The model a fine-tune starts from: ``bundle`` (kind "model"), a preset's
    architecture with its fresh (pretrained if the preset says so) weights, or an
    architecture from scratch — already adapted to ``classes``.  New layers are
    initialised from ``seed``, so "before" is the same on every run."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _start_model(kind, name, classes, in_chans, multilabel, bundle, input_size)


def _start_model(kind: str, name: str | None, classes: Sequence[str], in_chans: int, multilabel: bool,
                 bundle: Any, input_size: tuple[int, int] | None) -> Any:
    from ..presets.factory import build_model

    if kind not in START_KINDS:
        raise DataError(f"unknown start {kind!r}", f"use one of {', '.join(START_KINDS)}")
    if kind == "model":
        if bundle is None:
            raise DataError("no model to fine-tune", "choose a model in the panel, or start from a preset")
        from ..models.bioimageio_trainable import trainable_bundle

        # a bioimage.io package: its timm network as a model file can hold it; TorchScript refused here
        return with_input_size(adapt_to_classes(trainable_bundle(bundle), classes, multilabel), input_size)
    if not name:
        raise DataError(f"no {kind} name given", "choose a preset or an architecture")
    output = "sigmoid" if multilabel else "softmax"
    built = build_model(name, classes=list(classes), in_chans=in_chans, output=output, input_size=input_size,
                        pretrained=None if kind == "preset" else False)
    return built


def adapt_to_classes(bundle: Any, classes: Sequence[str], multilabel: bool = False) -> Any:
    """A copy of ``bundle`` whose outputs are ``classes``: the same model when the
    classes already match, else a fresh classification layer on the same features."""
    from ..models.heads import n_outputs

    classes = list(classes)
    want = "sigmoid" if multilabel else ("binary" if bundle.output == "binary" and len(classes) == 2 else "softmax")
    with bundle.lock:
        new = copy_network(bundle.network)  # a deep copy that keeps the known weights hash (feature cache)
    if list(bundle.classes) == classes and bundle.output == want:
        out = copy.copy(bundle)
        out.network, out.lock, out.provenance = new, threading.RLock(), dict(bundle.provenance)
        return out
    members = list(getattr(new, "members", None) or [new])
    for m in members:
        if not hasattr(m, "reset_classifier"):
            raise DataError(f"the model's network ({type(m).__name__}) cannot get a new classification layer",
                            "start from a preset or an architecture instead")
        m.reset_classifier(n_outputs(len(classes), want))
    out = copy.copy(bundle)
    out.network, out.lock = new, threading.RLock()
    out.classes, out.output, out.thresholds = classes, want, None
    out.provenance = {**bundle.provenance, "new_head": {"from_classes": list(bundle.classes), "classes": classes}}
    return out


def with_input_size(bundle: Any, input_size: tuple[int, int] | None) -> Any:
    """``bundle`` (a copy made for fine-tuning) at another input size: convolutional
    networks with global pooling take any size, and a smaller one trains faster."""
    from dataclasses import replace

    from ..models.registry import check_input_size

    if input_size is None or tuple(input_size) == tuple(bundle.input_size):
        return bundle
    size = (int(input_size[0]), int(input_size[1]))
    check_input_size(bundle.arch, size)
    bundle.preprocess = replace(bundle.preprocess, input_size=size)
    bundle.provenance = {**bundle.provenance, "input_size_changed": {"to": list(size)}}
    return bundle


def in_chans_of(items: Sequence[tuple[Any, ...]]) -> int:
    if not items:
        raise DataError("there are no labelled samples", "label some images or regions first")
    return int(np.asarray(items[0][0]).shape[0])


def evaluate_items(bundle: Any, items: Sequence[tuple[Any, ...]], device: str = "auto",
                   batch_size: int = 32, store: bool = False) -> dict:
    """``core.metrics`` of ``bundle`` on canonical (C, H, W) items with labels (the
    numbers ``cellclass evaluate`` reports: accuracy, macro F1, confusion …), plus
    the ``probabilities`` (dropped before they go into provenance)."""
    from ..evaluation.metrics import classification_metrics, multilabel_metrics
    from ..device import resolve_device
    from ..inference.predict import predict
    from .feature_cache import cached_probabilities

    if not items:
        return {"n_images": 0, "accuracy": None, "macro_f1": None}
    # head-only runs: no backbone pass; ``store`` (the starting model) leaves the features for the run
    probs = cached_probabilities(bundle, items, resolve_device(device), compute=store)
    if probs is None:
        probs = predict(bundle, [it[0] for it in items], batch_size=batch_size, device=device, channel_axis=0)
    if bundle.multilabel:
        out = multilabel_metrics([list(it[1]) for it in items], probs, bundle.classes, bundle.class_thresholds())
    else:
        out = classification_metrics([it[1][0] for it in items], probs, bundle.classes)
    return {**out, "probabilities": probs}


def _public(metrics: dict | None) -> dict | None:
    return None if metrics is None else {k: v for k, v in metrics.items() if k != "probabilities"}


def split_items(labels: list[list[int]], options: FineTuneOptions,
                keys: Sequence[str] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, validation) index pairs: one stratified split (by the items' names ``keys`` with
    ``options.stable_split``), or k folds."""
    from ..data import kfold_splits, stratified_split
    from ..data.splits import stable_split

    n = len(labels)
    if options.folds:
        if n < options.folds:
            raise DataError(f"{n} labelled samples cannot make {options.folds} folds", "label more, or use fewer folds")
        return [(np.asarray(a), np.asarray(b)) for a, b in kfold_splits(labels, options.folds, options.seed)]
    if options.stable_split and keys is not None:
        tr, va = stable_split(labels, keys, options.val_fraction, options.seed)
    else:
        tr, va = stratified_split(labels, options.val_fraction, options.seed)
    if len(tr) == 0 or len(va) == 0:
        raise DataError(f"{n} labelled samples are too few to hold out a validation set",
                        "label at least 2 samples per class")
    return [(np.asarray(tr), np.asarray(va))]


# ---------------------------------------------------------------------------- the run
def finetune_steps(start: Any, items: Sequence[tuple[Any, ...]], classes: Sequence[str],
                   options: FineTuneOptions | None = None, *, stop: threading.Event | None = None,
                   device: str = "auto", annotations: str | os.PathLike | None = None,
                   start_label: str = "") -> Generator[Any, None, FineTuneOutcome]:
    """Train ``start`` (a bundle already adapted to ``classes``, see :func:`start_model`)
    on ``items`` (``TrainingSample.as_tuple()``: ``(image, labels, name[, mask])``);
    yields ``training.events.TrainEvent``s (``epoch`` counts across folds) and returns a
    :class:`FineTuneOutcome`.

    Painted pixel labels (``mask``) are dense targets when ``start`` is an FCN: its
    class maps learn the painted regions (``training.fcn_targets``); an image-level model
    learns the classes painted anywhere in the plane."""
    from ..data import load_dataset

    options = options or FineTuneOptions()
    options.check()
    classes = list(classes)
    if list(start.classes) != classes:
        raise DataError(f"the model's classes {start.classes} are not the annotation classes {classes}",
                        "adapt it first with start_model()/adapt_to_classes()")
    items = list(items)
    dataset = load_dataset(items, classes, channel_axis=0, multi_label=start.multilabel)
    labels = dataset.labels  # items labelled only by painting get the painted classes
    counts = [sum(c in lb for lb in labels) for c in range(len(classes))]
    if sum(1 for c in counts if c) < 2 and not start.multilabel:
        raise DataError(f"labels of at least 2 classes are needed to fine-tune; counts per class: "
                        f"{dict(zip(classes, counts))}", "label examples of another class")
    splits = split_items(labels, options, [str(it[2]) if len(it) > 2 else str(i) for i, it in enumerate(items)])
    sha = file_sha256(annotations) if annotations is not None and Path(annotations).is_file() else None
    runs = yield from _train_folds(start, dataset, items, labels, splits, options, stop, device)
    if not runs.results:
        raise DataError("fine-tuning was cancelled before it started", "press Fine-tune again")
    bundle, before, after, n_train, n_val = _verdict(start, items, labels, splits, runs, device)
    bundle.provenance = {**bundle.provenance, "fine_tune": {
        "start": start_label or start.arch.describe(),
        "annotations": str(annotations) if annotations is not None else None,
        "annotations_sha256": sha,
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(options).items()},
        "n_train": n_train, "n_val": n_val, "class_counts": dict(zip(classes, counts)),
        "before": _public(before), "after": _public(after), "cancelled": runs.cancelled,
    }}
    return FineTuneOutcome(bundle, start, runs.history, runs.cancelled, _public(before), _public(after), n_train,
                           n_val, classes, len(splits) if len(splits) > 1 else 0,
                           [_public(m) or {} for _, m, _ in runs.results])


@dataclass
class _FoldRuns:
    results: list[tuple[Any, dict, dict]] = field(default_factory=list)  # (bundle, metrics on its val, before on it)
    history: list[dict] = field(default_factory=list)
    cancelled: bool = False
    oof: Any = None  # out-of-fold predicted class per item (-1: not judged)


def _train_folds(start: Any, dataset: Any, items: list, labels: list, splits: list, options: FineTuneOptions,
                 stop: threading.Event | None, device: str) -> Generator[Any, None, _FoldRuns]:
    from .api import train
    from .options import preset_of

    runs = _FoldRuns(oof=np.zeros(len(items), dtype=int) - 1)
    recipe = options.recipe(preset_of(start).train if preset_of(start) is not None else None)
    for f, (tr, va) in enumerate(splits):
        if stop is not None and stop.is_set():
            runs.cancelled = True
            break
        val_items = [(items[i][0], labels[i]) for i in va]
        before = evaluate_items(start, val_items, device, store=True)
        gen = train(start, dataset.subset(tr), classes=list(start.classes), val_data=dataset.subset(va), device=device,
                    stop=stop, seed=options.seed + f, channel_axis=0, recipe=recipe)
        result = yield from relay(gen, lambda ev, f=f: _fold_event(ev, f, len(splits)))
        runs.history += [{**h, "fold": f} for h in result.history] if len(splits) > 1 else list(result.history)
        after = evaluate_items(result.bundle, val_items, device)
        runs.results.append((result.bundle, after, before))
        if after.get("probabilities") is not None and not start.multilabel:
            runs.oof[va] = np.asarray(after["probabilities"]).argmax(axis=1)
        if result.cancelled:
            runs.cancelled = True
            break
    return runs


def _fold_event(event: Any, f: int, n: int) -> Any:
    if n > 1:
        event.message = f"fold {f + 1}/{n}" + (f": {event.message}" if event.message else "")
    return event


def _verdict(start: Any, items: list, labels: list, splits: list, runs: _FoldRuns,
             device: str) -> tuple[Any, dict, dict, int, int]:
    """(kept model, before, after, n_train, n_val): the best fold's model, judged on the same items as the start."""
    results = runs.results
    best = max(range(len(results)), key=lambda i: results[i][1]["accuracy"] or 0.0)
    if len(splits) == 1:
        return results[0][0], results[0][2], results[0][1], len(splits[0][0]), len(splits[0][1])
    # k-fold: every item judged by the model that did not see it, and by the start model
    done = np.concatenate([splits[i][1] for i in range(len(results))])
    before = evaluate_items(start, [(items[i][0], labels[i]) for i in done], device)
    y = np.array([labels[i][0] for i in done]) if not start.multilabel else None
    after = ({"n_images": len(done), "accuracy": float(np.mean(runs.oof[done] == y)), "macro_f1": None}
             if y is not None else results[best][1])
    return results[best][0], before, after, len(items) - len(splits[best][1]), len(done)


def finetune(start: Any, items: Sequence[tuple[Any, ...]], classes: Sequence[str],
             options: FineTuneOptions | None = None, **kwargs: Any) -> FineTuneOutcome:
    """:func:`finetune_steps` run to the end."""
    return drain(finetune_steps(start, items, classes, options, **kwargs))
