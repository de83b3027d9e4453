"""Stratified splits, k-fold, class balance and training-fraction subsets.

Multi-label items are stratified on their *rarest* label (the label whose class
has the fewest images), so rare compartments reach every fold; items without a
label form their own stratum.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import DataError


def strata(labels: Sequence[Sequence[int]]) -> np.ndarray:
    """One stratum per item: its label, or for multi-label items the rarest one (-1: none)."""
    counts: dict[int, int] = {}
    for lab in labels:
        for k in lab:
            counts[k] = counts.get(k, 0) + 1
    return np.array([min(lab, key=lambda k: (counts[k], k)) if len(lab) else -1 for lab in labels], dtype=np.int64)


def stratified_split(labels: Sequence[Sequence[int]], val_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices), each class split in the same proportion.

    Every class with at least two images gets at least one validation image when
    ``val_fraction > 0``; a class with one image stays in training.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"validation fraction must be in [0, 1), got {val_fraction}")
    n = len(labels)
    if val_fraction == 0.0 or n < 2:
        return np.arange(n), np.empty(0, np.int64)
    rng = np.random.default_rng(seed)
    s = strata(labels)
    val: list[int] = []
    for k in np.unique(s):
        members = np.flatnonzero(s == k)
        rng.shuffle(members)
        if len(members) < 2:
            continue
        take = min(len(members) - 1, max(1, int(round(val_fraction * len(members)))))
        val.extend(members[:take].tolist())
    val_idx = np.array(sorted(val), dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(n), val_idx)
    return train_idx, val_idx


def stable_split(labels: Sequence[Sequence[int]], keys: Sequence[str], val_fraction: float,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """:func:`stratified_split`'s proportions, but each class's validation items are those whose
    ``keys`` (item names) hash lowest with ``seed``: one more label moves at most one other item
    between the two sets, where a re-drawn permutation reshuffles them all (live mode retrains
    after every label, and each item that changes sides needs other cached feature views)."""
    import hashlib

    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"validation fraction must be in [0, 1), got {val_fraction}")
    if len(keys) != len(labels):
        raise DataError(f"{len(keys)} item names for {len(labels)} labelled items")
    n = len(labels)
    if val_fraction == 0.0 or n < 2:
        return np.arange(n), np.empty(0, np.int64)
    seen: dict[str, int] = {}
    score = []
    for key in keys:
        seen[key] = seen.get(key, -1) + 1  # repeated names: the k-th one is its own item
        score.append(hashlib.sha256(f"{seed}\0{key}\0{seen[key]}".encode()).hexdigest())
    s = strata(labels)
    val: list[int] = []
    for k in np.unique(s):
        members = sorted(np.flatnonzero(s == k).tolist(), key=lambda i: score[i])
        if len(members) < 2:
            continue
        take = min(len(members) - 1, max(1, round(val_fraction * len(members))))
        val.extend(members[:take])
    val_idx = np.array(sorted(val), dtype=np.int64)
    return np.setdiff1d(np.arange(n), val_idx), val_idx


def kfold_splits(labels: Sequence[Sequence[int]], k: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` stratified (train, test) index pairs covering every item once as test."""
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(labels)
    if k < 2:
        raise DataError(f"k-fold needs k >= 2, got {k}")
    if n < k:
        raise DataError(f"{k}-fold cross-validation needs at least {k} images, got {n}", "use fewer folds")
    s = strata(labels)
    _, counts = np.unique(s, return_counts=True)
    splitter = StratifiedKFold(k, shuffle=True, random_state=seed) if counts.min() >= k else KFold(k, shuffle=True, random_state=seed)
    return [(tr.astype(np.int64), te.astype(np.int64)) for tr, te in splitter.split(np.zeros(n), s)]


def class_weights(labels: Sequence[Sequence[int]], n_classes: int, multilabel: bool = False) -> np.ndarray:
    """Loss weights that balance the classes.

    Single-label: ``n / (K * count_k)`` (sklearn's 'balanced'). Multi-label: the BCE
    ``pos_weight`` ``negatives_k / positives_k``. Classes without images get 1, and so
    do multi-label classes present in every image: a weight of 0 would silence their
    positives, the only examples they have.
    """
    n = len(labels)
    counts = np.zeros(n_classes, np.float64)
    for lab in labels:
        for k in lab:
            counts[k] += 1
    w = np.ones(n_classes, np.float64)
    has = counts > 0
    if multilabel:
        both = has & (counts < n)
        w[both] = (n - counts[both]) / counts[both]
    else:
        w[has] = n / (has.sum() * counts[has])
    return w.astype(np.float32)


def sample_weights(labels: Sequence[Sequence[int]], n_classes: int) -> np.ndarray:
    """Per-item sampling weights so each class is drawn equally often (balanced sampling)."""
    w = class_weights(labels, n_classes, multilabel=False)
    s = strata(labels)
    return np.array([w[k] if k >= 0 else 1.0 for k in s], dtype=np.float64)


def training_fraction(labels: Sequence[Sequence[int]], fraction: float, seed: int = 0) -> np.ndarray:
    """A stratified subset of ``fraction`` of the items (learning curves: 20 … 100 %).

    Nested: for one seed, the 40 % subset contains the 20 % subset.
    """
    if not 0.0 < fraction <= 1.0:
        raise DataError(f"training fraction must be in (0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    s = strata(labels)
    keep: list[int] = []
    for k in np.unique(s):
        members = np.flatnonzero(s == k)
        rng.shuffle(members)
        keep.extend(members[: max(1, int(round(fraction * len(members))))].tolist())
    return np.array(sorted(keep), dtype=np.int64)
