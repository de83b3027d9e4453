"""The training recipe a preset carries and a model file records: typed, frozen, JSON-able."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..data.augment import Augment


@dataclass(frozen=True)
class Stage:
    """One phase of training: which parameters learn, at what rate, for how long."""

    trainable: str = "all"  # 'head' | 'all'
    lr: float = 1e-3
    epochs: int | None = None  # None: the recipe's epochs


@dataclass(frozen=True)
class TrainRecipe:
    epochs: int = 30
    batch_size: int = 32
    optimizer: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    schedule: str = "none"  # none | plateau | cosine
    plateau_factor: float = 1.0 / 3.0
    plateau_patience: int = 8
    early_stopping_patience: int | None = None
    min_delta: float = 0.0
    keep_best: bool = True  # restore the epoch with the lowest validation loss
    stages: tuple[Stage, ...] = ()
    freeze_fraction: float = 0.0  # freeze this leading fraction of backbone layers
    freeze_blocks: int | None = None  # freeze the stem + first N blocks instead (core/freeze_blocks.py)
    label_smoothing: float = 0.0
    head_l1l2: float = 0.0  # L1 + L2 penalty on the hidden head layer (study 4)
    augment: Augment = field(default_factory=Augment)
    val_fraction: float = 0.1
    test_fraction: float = 0.0
    cv_folds: int = 0
    separate_member_augmentation: bool = False  # ensembles: each member its own stream
    threshold_step: float = 0.01  # multi-label: per-class thresholds maximising Dice
    fcn_target: dict[str, float] | None = None  # protein FCN: channel, sigma, threshold, dilate
    # head-only training reads the frozen backbone's features from a cache (core.training.feature_cache);
    # cache_views 0: every flip/turn view the augmentation reaches (the same model as without the
    # cache), n > 0: only the first n views, drawn uniformly (fewer forward passes, other draws)
    feature_cache: bool = True
    cache_views: int = 0


#: The recipe of a model trained from an architecture name (`cellclass train --arch`, ``fit("resnet18", …)``),
#: the presets keep their papers' own.  From scratch in a few epochs, the optimiser steps and the images are
#: what learn: batch 16 gives twice the steps of 32 for the same images, random flips are free
#: label-preserving data for microscopy (no up or down), and every labelled image trains — no validation
#: split, the last epoch is kept.  Measured (benchmarks/bench_train_vs_plain.py, 240 images, 8 epochs,
#: macro-F1 on 120 unseen): holding out 10 % for keep-best cost 0.08-0.24 (8-bit cells 0.857 vs 0.934,
#: 16-bit fibres 0.700 vs 0.942) and it never restored an earlier epoch beyond the split's noise.  Pass
#: ``val_fraction`` (``--val-fraction 0.1``) for keep-best, early stopping and calibrated probabilities.
ARCH_RECIPE = TrainRecipe(batch_size=16, augment=Augment(hflip=True, vflip=True), val_fraction=0.0)

