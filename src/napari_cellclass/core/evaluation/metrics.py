"""Metrics of the five studies, as thin wrappers over scikit-learn.

Single-label (studies 1-4): accuracy, per-class and macro precision / recall / F1,
macro one-vs-rest ROC AUC, confusion matrix, and the softmax confidence of right
vs wrong predictions (study 1, table 9).  Multi-label (study 5): per-class Dice,
mean Dice, exact match, the paper's per-class correct rate and its table 1 (correct
rate by the number of labels per image), and per-class thresholds chosen to
maximise Dice in steps of 0.01.  A learning-curve helper (study 1, table 7) calls a
training function it is given on nested, stratified fractions of the training set.

Everything returned is JSON-ready (plain floats, ints, lists, ``None``).  Pure
numpy + scikit-learn: no torch, so the CLI and the viewer can import it cheaply.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import DataError

LEARNING_CURVE_FRACTIONS = (0.2, 0.4, 0.6, 0.8, 1.0)


def _f(x: float | None) -> float | None:
    """A JSON-safe float: NaN (undefined) becomes None."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


def _check_probs(probs: np.ndarray, classes: Sequence[str], n: int) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(classes):
        raise DataError(f"probabilities of shape {probs.shape} do not fit {len(classes)} classes",
                        "pass an (N, K) array with one column per class")
    if probs.shape[0] != n:
        raise DataError(f"{n} labels but {probs.shape[0]} rows of probabilities", "pass one row per labelled image")
    if n == 0:
        raise DataError("no images to evaluate", "pass at least one labelled image")
    return probs


# --------------------------------------------------------------------------- single-label
def roc_auc_ovr(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> tuple[float | None, dict[str, float | None], str]:
    """Macro one-vs-rest ROC AUC and the AUC of every class.

    Computed class by class (rather than ``roc_auc_score(multi_class='ovr')``) so
    vote fractions and other scores that do not sum to one are accepted, and so a
    class that is absent — or the only one present — gives ``None`` with a reason
    instead of an exception.  For two classes both per-class AUCs equal the usual
    binary AUC.
    """
    from sklearn.metrics import roc_auc_score

    per: dict[str, float | None] = {}
    missing: list[str] = []
    for k, name in enumerate(classes):
        pos = y_true == k
        if pos.all() or not pos.any():
            per[name] = None
            missing.append(name)
        else:
            per[name] = float(roc_auc_score(pos, probs[:, k]))
    if missing:
        return None, per, (f"ROC AUC is undefined: one-vs-rest needs examples in and outside every class, "
                           f"and {', '.join(missing)} has none in or none outside the labels")
    return float(np.mean([v for v in per.values()])), per, ""


def confidence_summary(y_true: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Top-class probability of right vs wrong predictions (study 1, table 9)."""
    conf = probs.max(axis=1)
    right = probs.argmax(axis=1) == y_true

    def stats(v: np.ndarray) -> dict[str, Any]:
        if v.size == 0:
            return {"n": 0, "mean": None, "median": None, "sd": None, "min": None, "max": None}
        return {"n": int(v.size), "mean": float(v.mean()), "median": float(np.median(v)), "sd": float(v.std()),
                "min": float(v.min()), "max": float(v.max())}

    r, w = stats(conf[right]), stats(conf[~right])
    return {"right_mean": r["mean"], "wrong_mean": w["mean"], "right": r, "wrong": w}


def classification_metrics(y_true: Sequence[int] | np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Every single-label metric the studies report, from labels and probabilities.

    ``macro_f1`` (and macro precision/recall) average over the classes that occur in
    the labels or the predictions, as scikit-learn does by default, so evaluating on
    a subset without some class is not dragged down by a class it never saw;
    ``per_class`` lists every class of the model, with its support.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    classes = list(classes)
    y = np.asarray(y_true, dtype=np.int64).reshape(-1)
    probs = _check_probs(probs, classes, len(y))
    if y.size and (y.min() < 0 or y.max() >= len(classes)):
        raise DataError(f"labels must be class indices 0..{len(classes) - 1}, got {sorted(set(y.tolist()))}")
    pred = probs.argmax(axis=1)
    labels = list(range(len(classes)))
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    mp, mr, mf, _ = precision_recall_fscore_support(y, pred, average="macro", zero_division=0)
    auc, auc_per, why = roc_auc_ovr(y, probs, classes)
    out: dict[str, Any] = {
        "classes": classes,
        "n_images": int(y.size),
        "accuracy": float(accuracy_score(y, pred)),
        "macro_precision": float(mp),
        "macro_recall": float(mr),
        "macro_f1": float(mf),
        "per_class": {c: {"precision": float(p[k]), "recall": float(r[k]), "f1": float(f[k]), "support": int(s[k])}
                      for k, c in enumerate(classes)},
        "confusion_matrix": confusion_matrix(y, pred, labels=labels).tolist(),
        "auc_macro": auc,
        "auc_per_class": auc_per,
        "confidence": confidence_summary(y, probs),
    }
    if why:
        out["auc_note"] = why
    return out


# --------------------------------------------------------------------------- multi-label
def _multi_hot(y_true: np.ndarray | Sequence[Sequence[int]], k: int) -> np.ndarray:
    """(N, K) 0/1 from an (N, K) array or from lists of class indices."""
    if isinstance(y_true, np.ndarray) and y_true.ndim == 2:
        if y_true.shape[1] != k:
            raise DataError(f"labels have {y_true.shape[1]} columns for {k} classes")
        return (y_true > 0.5).astype(np.int64)
    out = np.zeros((len(y_true), k), np.int64)
    for i, labs in enumerate(y_true):
        out[i, list(labs)] = 1
    return out


def dice_per_class(y_true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Dice = 2TP / (2TP + FP + FN) per column (= per-class F1); NaN where a class is
    neither present nor predicted (nothing to score)."""
    from sklearn.metrics import f1_score

    return np.asarray(f1_score(y_true, pred, average=None, zero_division=np.nan), dtype=np.float64)


def multilabel_confusion(y_true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Study 5, figure 4: a (K, K+1) matrix of true class × predicted class.

    A true label that was predicted is a hit on the diagonal; a true label that was
    missed "gets a hit from all predicted false positives", and one hit in the last
    column ("nothing") when no false positive was predicted.
    """
    n, k = y_true.shape
    m = np.zeros((k, k + 1), np.int64)
    for i in range(n):
        fp = np.flatnonzero(pred[i].astype(bool) & ~y_true[i].astype(bool))
        for t in np.flatnonzero(y_true[i]):
            if pred[i, t]:
                m[t, t] += 1
            elif fp.size:
                m[t, fp] += 1
            else:
                m[t, k] += 1
    return m


def multilabel_metrics(y_true: np.ndarray | Sequence[Sequence[int]], probs: np.ndarray, classes: Sequence[str],
                       thresholds: Sequence[float] | None = None) -> dict[str, Any]:
    """Study 5's metrics at per-class ``thresholds`` (0.5 each when None).

    The keys every evaluation has mean, for multi-label data: ``accuracy`` = exact
    match (every label of the image right), ``macro_f1`` = ``mean_dice`` (per-class
    F1 is Dice; classes neither present nor predicted are left out), ``per_class``
    precision/recall/F1/support per label, ``confusion_matrix`` = study 5's
    (K, K+1) matrix with a last "nothing predicted" column, ``auc_macro`` over the
    per-class ROC AUCs.
    """
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support, roc_auc_score

    classes = list(classes)
    k = len(classes)
    y = _multi_hot(y_true, k)
    probs = _check_probs(probs, classes, len(y))
    th = np.full(k, 0.5) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    if th.shape != (k,):
        raise DataError(f"{th.size} thresholds for {k} classes", "pass one threshold per class")
    pred = (probs >= th[None, :]).astype(np.int64)
    dice = dice_per_class(y, pred)
    p, r, _, s = precision_recall_fscore_support(y, pred, average=None, zero_division=0)
    conf = multilabel_confusion(y, pred)
    rows = conf.sum(axis=1)
    correct = np.where(rows > 0, np.diag(conf[:, :k]) / np.maximum(rows, 1), np.nan)
    n_labels = y.sum(axis=1)
    exact = (pred == y).all(axis=1)
    by_n: dict[str, dict[str, Any]] = {}
    for n in sorted(set(n_labels.tolist())):
        sel = n_labels == n
        found = (pred[sel] & y[sel]).sum() / max(int(y[sel].sum()), 1) if n else None
        by_n[str(n)] = {"n_images": int(sel.sum()), "fraction": float(sel.mean()),
                        "exact_match": float(exact[sel].mean()), "labels_found": _f(found)}
    auc_per = {c: (float(roc_auc_score(y[:, j], probs[:, j])) if 0 < y[:, j].sum() < len(y) else None)
               for j, c in enumerate(classes)}
    missing = [c for c, v in auc_per.items() if v is None]
    defined = dice[~np.isnan(dice)]
    mean_dice = float(defined.mean()) if defined.size else None
    out = {
        "classes": classes,
        "n_images": int(len(y)),
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": mean_dice,
        "per_class": {c: {"precision": float(p[j]), "recall": float(r[j]), "f1": _f(dice[j]), "support": int(s[j])}
                      for j, c in enumerate(classes)},
        "confusion_matrix": conf.tolist(),
        "confusion_columns": classes + ["nothing"],
        "auc_macro": None if missing else float(np.mean(list(auc_per.values()))),
        "auc_per_class": auc_per,
        "thresholds": [float(t) for t in th],
        "per_class_dice": {c: _f(d) for c, d in zip(classes, dice)},
        "mean_dice": mean_dice,
        "exact_match": float(exact.mean()),
        "per_class_correct_rate": {c: _f(v) for c, v in zip(classes, correct)},
        "mean_correct_rate": _f(np.nanmean(correct)) if (~np.isnan(correct)).any() else None,
        "correct_rate_by_n_labels": by_n,
    }
    if missing:
        out["auc_note"] = (f"ROC AUC is undefined: {', '.join(missing)} is present in all or none of the images")
    return out


def choose_thresholds(y_true: np.ndarray | Sequence[Sequence[int]], probs: np.ndarray, step: float = 0.01) -> list[float]:
    """Per class, the threshold in ``step``s (step … 1 - step) that maximises Dice (study 5).

    Ties are common (every threshold between the highest negative and the lowest
    positive score separates them perfectly); they go to the threshold closest to
    0.5, so a class with few examples does not drift to an extreme.  A class never
    present scores Dice 1 when nothing is predicted.  (Same rule as the training
    loop's ``core.thresholds``.)
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise DataError(f"probabilities must be (N, K), got shape {probs.shape}")
    y = _multi_hot(y_true, probs.shape[1]).astype(bool)
    if len(y) != len(probs):
        raise DataError(f"{len(y)} labels but {len(probs)} rows of probabilities")
    if not 0 < step < 0.5:
        raise DataError(f"threshold step must be in (0, 0.5), got {step}")
    from .thresholds import choose_thresholds as dice_thresholds  # the training loop's rule, one implementation

    return dice_thresholds(y, probs, step)


# --------------------------------------------------------------------------- learning curve
def nested_fractions(labels: Sequence[Sequence[int]] | Sequence[int], fractions: Sequence[float] = LEARNING_CURVE_FRACTIONS,
                     seed: int = 0) -> list[np.ndarray]:
    """Index sets of each fraction of a training set, stratified by (first) class and
    nested (every smaller set is inside the larger ones), so the curve measures data
    size and not which images were drawn."""
    firsts = [int(lab[0]) if isinstance(lab, (list, tuple, np.ndarray)) and len(lab) else
              (int(lab) if not isinstance(lab, (list, tuple, np.ndarray)) else -1) for lab in labels]
    for f in fractions:
        if not 0 < f <= 1:
            raise DataError(f"learning-curve fractions must be in (0, 1], got {f}")
    rng = np.random.default_rng(seed)
    by_class = {c: rng.permutation(np.flatnonzero(np.asarray(firsts) == c)) for c in sorted(set(firsts))}
    out = []
    for f in fractions:
        take = [idx[: max(1, int(math.ceil(f * idx.size - 1e-9)))] for idx in by_class.values()]
        out.append(np.sort(np.concatenate(take)))
    return out


def learning_curve(train_fn: Callable[[np.ndarray], Any], score_fn: Callable[[Any], dict[str, Any]],
                   labels: Sequence[Sequence[int]] | Sequence[int],
                   fractions: Sequence[float] = LEARNING_CURVE_FRACTIONS, seed: int = 0,
                   progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """Study 1, table 7: train on 20/40/60/80/100 % of the training set, score each.

    ``train_fn(indices)`` trains on those training-set items and returns a model;
    ``score_fn(model)`` returns a metrics dict (e.g. :func:`classification_metrics`
    on a fixed test set).  Returns one row per fraction: ``fraction``, ``n_train``
    and the scalar metrics.
    """
    subsets = nested_fractions(labels, fractions, seed)
    rows: list[dict[str, Any]] = []
    for i, (f, idx) in enumerate(zip(fractions, subsets)):
        scores = score_fn(train_fn(idx))
        rows.append({"fraction": float(f), "n_train": int(idx.size),
                     **{k: v for k, v in scores.items() if isinstance(v, (int, float)) or v is None}})
        if progress is not None:
            progress(i + 1, len(subsets))
    return rows


def mean_sd(values: Sequence[float | None]) -> dict[str, float | None]:
    """Mean ± SD (sample SD, ddof=1, as papers report across folds) of defined values."""
    v = np.asarray([x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))], np.float64)
    if v.size == 0:
        return {"mean": None, "sd": None, "n": 0}
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size)}
