"""Data sets for training and evaluation: folders, CSV manifests, in-viewer annotations.

>>> ds = load_dataset("data/cell-line")                    # doctest: +SKIP
>>> train_idx, val_idx = stratified_split(ds.labels, 0.1)  # doctest: +SKIP

``augment`` holds the batched tensor augmentations, ``splits`` the stratified
splits, k-fold and class balance, ``tensors`` the per-recipe input cache.
"""

from __future__ import annotations

from .dataset import Dataset
from .sources import load_dataset
from .splits import class_weights, kfold_splits, sample_weights, stratified_split, strata, training_fraction

__all__ = ["Dataset", "load_dataset", "stratified_split", "kfold_splits", "class_weights", "sample_weights",
           "strata", "training_fraction"]
