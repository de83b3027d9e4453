"""k-fold cross-validation, reported as study 1 did: every fold, then mean ± SD.

Each fold trains a fresh model on the other folds (``core.train.train``, with
its own validation split taken from the training part for early stopping and
keep-best) and is scored on its held-out fold with ``core.evaluate``.  The hybrid
PCA + SVM preset is fitted with ``core.hybrid`` instead of gradient descent.

``cross_validate_steps`` is a generator for the viewer's workers (one
:class:`CVProgress` per training event, cancellable through ``stop``);
``cross_validate`` runs it to the end.  ``learning_curve_run`` trains on growing
fractions of a training set and scores each model on a fixed test set (study 1,
table 7).
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DataError
from ..evaluation.metrics import mean_sd

#: scalar metrics summarised across folds (those a model type has)
SUMMARY_KEYS = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "auc_macro",
                "mean_dice", "exact_match", "mean_correct_rate")


@dataclass
class CVProgress:
    fold: int  # 1-based fold being trained (folds + 1 once all are done)
    folds: int
    message: str
    event: Any = None  # the TrainEvent of the fold's training, when there is one
    fold_metrics: dict[str, Any] | None = None  # set on the event that finishes a fold

    @property
    def fraction(self) -> float:
        """Overall progress 0..1, counting the fold's training steps where known."""
        within = 0.0
        ev = self.event
        if ev is not None and ev.steps:
            within = min(1.0, ev.step / ev.steps)
        return min(1.0, (self.fold - 1 + within) / self.folds)


def _train_fold(model: Any, train_ds: Any, classes: list[str], seed: int, device: Any, stop: Any,
                train_kwargs: dict[str, Any]) -> Generator[Any, None, tuple[Any, dict[str, Any]]]:
    """Yield the fold's training events; return (bundle, training summary).

    The hybrid PCA + SVM preset is fitted by ``core.hybrid.train_hybrid``, which
    takes ``train``'s arguments and speaks its events.
    """
    from .hybrid import is_hybrid_preset, train_hybrid
    from .api import train

    runner = train_hybrid if is_hybrid_preset(model) else train
    result = yield from runner(model, train_ds, classes=classes, device=device, stop=stop, seed=seed, **train_kwargs)
    training = result.bundle.provenance.get("training") or {}
    return result.bundle, {"kind": "hybrid" if runner is train_hybrid else "train", "cancelled": bool(result.cancelled),
                           "stopped_early": bool(result.stopped_early),
                           "epochs_run": training.get("epochs_run", len(result.history)),
                           "best_epoch": training.get("best_epoch"), "history": result.history}


def summarise(fold_results: list[dict[str, Any]], classes: list[str]) -> dict[str, Any]:
    """Mean ± SD (ddof=1) across folds of every scalar metric and of per-class
    precision, recall and F1 (study 1 reports each class's figures as mean ± SD)."""
    summary: dict[str, Any] = {}
    for key in SUMMARY_KEYS:
        if any(key in f["metrics"] for f in fold_results):
            summary[key] = mean_sd([f["metrics"].get(key) for f in fold_results])
    for stat in ("precision", "recall", "f1"):
        summary[f"per_class_{stat}"] = {c: mean_sd([f["metrics"]["per_class"][c][stat] for f in fold_results])
                                        for c in classes}
    mats = [np.asarray(f["metrics"]["confusion_matrix"]) for f in fold_results]
    if mats and all(m.shape == mats[0].shape for m in mats):
        summary["confusion_matrix_total"] = np.sum(mats, axis=0).tolist()
    return summary


DEFAULT_FOLDS = 10  # study 1, when neither the caller nor the preset names a fold count


def default_folds(model: Any, recipe: Any = None) -> int:
    """The fold count of ``recipe``, else of the model's preset (its ``cv_folds``), else 10."""
    from ..presets.studies import PRESETS

    if recipe is not None and getattr(recipe, "cv_folds", 0) >= 2:
        return int(recipe.cv_folds)
    name = model if isinstance(model, str) else (getattr(model, "provenance", None) or {}).get("preset")
    preset = PRESETS.get(name or "")
    if preset is not None and preset.train.cv_folds >= 2:
        return int(preset.train.cv_folds)
    return DEFAULT_FOLDS


def cross_validate_steps(model: Any, data: Any, folds: int | None = None, seed: int = 0, *, device: Any = "auto",
                         batch_size_eval: int = 32, channel_axis: Any = "auto", stop: Any = None,
                         **train_kwargs: Any) -> Generator[CVProgress, None, dict[str, Any]]:
    """Like :func:`cross_validate`, yielding :class:`CVProgress` as it goes."""
    from ..data import kfold_splits, load_dataset
    from ..evaluation.evaluate import evaluate

    if not isinstance(model, str) and not hasattr(model, "network"):
        raise DataError(f"cannot cross-validate a {type(model).__name__}", "pass a preset or architecture name, or a model")
    ds = load_dataset(data, channel_axis=channel_axis, multi_label=train_kwargs.get("multi_label"))
    if folds is None:
        folds = default_folds(model, train_kwargs.get("recipe"))
    # the held-out fold is the test set: a fold's training keeps all its images for training and validation
    train_kwargs.setdefault("test_fraction", 0.0)
    if folds < 2:
        raise DataError(f"cross-validation needs at least 2 folds, got {folds}", "use --folds 2 or more")
    if len(ds) < folds:
        raise DataError(f"{len(ds)} images cannot be split into {folds} folds", "use fewer folds or more images")
    splits = kfold_splits(ds.labels, folds, seed)
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []
    cancelled = False
    for f, (tr, te) in enumerate(splits, start=1):
        yield CVProgress(f, folds, f"fold {f}/{folds}: training on {len(tr)} images")
        gen = _train_fold(model, ds.subset(tr), ds.classes, seed + f, device, stop, train_kwargs)
        while True:
            try:
                ev = next(gen)
            except StopIteration as done:
                bundle, training = done.value
                break
            yield CVProgress(f, folds, f"fold {f}/{folds}: {ev.line()}", ev)
        if training.get("cancelled") or (stop is not None and stop.is_set()):
            cancelled = True
            break
        m = evaluate(bundle, ds.subset(te), device=device, batch_size=batch_size_eval)
        m.pop("model", None)
        m.pop("data", None)
        results.append({"fold": f, "n_train": int(len(tr)), "n_test": int(len(te)),
                        "training": {k: v for k, v in training.items() if k != "history"}, "metrics": m})
        score = m.get("macro_f1")
        yield CVProgress(f + 1 if f == folds else f, folds,
                         f"fold {f}/{folds}: macro F1 {score:.3f}" if isinstance(score, float) else f"fold {f}/{folds} done",
                         fold_metrics=m)
    out: dict[str, Any] = {
        "classes": ds.classes, "folds": folds, "seed": seed, "n_images": len(ds),
        "model": model if isinstance(model, str) else model.arch.describe(),
        "train_options": {k: _jsonable(v) for k, v in train_kwargs.items()},
        "per_fold": results, "summary": summarise(results, ds.classes) if results else {},
        "cancelled": cancelled, "seconds": round(time.perf_counter() - t0, 2),
    }
    return out


def _jsonable(v: Any) -> Any:
    if isinstance(v, (str, int, bool)) or v is None:
        return v
    if isinstance(v, float):
        return None if math.isnan(v) else v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return str(v)


def cross_validate(model: Any, data: Any, folds: int | None = None, seed: int = 0, **kwargs: Any) -> dict[str, Any]:
    """k-fold cross-validation of ``model`` (preset/architecture name or bundle) on ``data``.

    ``folds`` defaults to the preset's ``cv_folds`` (study 1: 10), else 10.

    Returns ``per_fold`` (training summary + the full ``evaluate`` metrics of each
    held-out fold) and ``summary`` (mean ± SD of accuracy, macro F1, AUC …, per-class
    F1, and the confusion matrix summed over folds).  ``kwargs``: ``device``,
    ``stop``, ``channel_axis`` and any option of ``core.train.train`` (epochs=, lr=,
    batch_size=, pretrained=, input_size= …).
    """
    return _drain(cross_validate_steps(model, data, folds, seed, **kwargs))


def _drain(gen: Generator[Any, None, Any]) -> Any:
    while True:
        try:
            next(gen)
        except StopIteration as done:
            return done.value


def learning_curve_run(model: Any, train_data: Any, test_data: Any, fractions: tuple[float, ...] | None = None,
                       seed: int = 0, *, device: Any = "auto", channel_axis: Any = "auto", stop: Any = None,
                       **train_kwargs: Any) -> list[dict[str, Any]]:
    """Study 1, table 7: train on 20/40/60/80/100 % of ``train_data`` (nested,
    stratified subsets), score each model on the fixed ``test_data``.

    Returns one row per fraction: ``fraction``, ``n_train`` and the scalar metrics
    of ``evaluate`` (accuracy, macro F1, AUC …).
    """
    from ..data import load_dataset
    from ..evaluation.evaluate import evaluate
    from ..evaluation.metrics import LEARNING_CURVE_FRACTIONS, learning_curve

    train_kwargs.setdefault("test_fraction", 0.0)  # the fixed test_data is the test set
    ds = load_dataset(train_data, channel_axis=channel_axis, multi_label=train_kwargs.get("multi_label"))
    test = load_dataset(test_data, channel_axis=channel_axis, multi_label=train_kwargs.get("multi_label"))

    def train_fn(idx: np.ndarray) -> Any:
        return _drain(_train_fold(model, ds.subset(idx), ds.classes, seed, device, stop, train_kwargs))[0]

    return learning_curve(train_fn, lambda b: evaluate(b, test, device=device), ds.labels,
                          fractions or LEARNING_CURVE_FRACTIONS, seed)
