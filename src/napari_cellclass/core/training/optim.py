"""Which parameters learn, with which optimiser and schedule, against which loss.

* Stages (study 4): ``head`` trains only the classifier head(s) — every member's
  in an ensemble — with the backbone frozen; ``all`` trains everything.
* ``freeze_fraction`` (study 3: 200 of 271 Keras layers): the leading fraction of
  each backbone's parameterised layers, in definition order, never learns.
* ``freeze_blocks`` (study 3, as blocks): the stem and the first N blocks of each
  backbone never learn; when set it replaces ``freeze_fraction``.
* Frozen batch-norm layers run in inference mode, as Keras' ``trainable=False``
  does, so their running statistics stay those of the pretrained weights.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CellclassError
from .freezing import freeze_first_blocks
from ..data.augment import Augment
from ..presets.recipe import Stage, TrainRecipe

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "plateau", "cosine")
_HEAD_NAMES = ("head", "classifier")


# ------------------------------------------------------------------ recipe overrides
def recipe_with(recipe: TrainRecipe, overrides: dict[str, Any]) -> TrainRecipe:
    """``recipe`` with TrainRecipe fields replaced; dicts become Augment / Stage values."""
    names = {f.name for f in fields(TrainRecipe)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise CellclassError(f"unknown training option(s) {unknown}", f"TrainRecipe fields: {', '.join(sorted(names))}")
    vals = dict(overrides)
    try:
        if isinstance(vals.get("augment"), dict):
            vals["augment"] = Augment(**vals["augment"])
        if "stages" in vals and vals["stages"] is not None:
            vals["stages"] = tuple(s if isinstance(s, Stage) else Stage(**s) for s in vals["stages"])
        if isinstance(vals.get("betas"), list):
            vals["betas"] = tuple(float(b) for b in vals["betas"])
    except TypeError as err:
        raise CellclassError(f"invalid training option: {err}", "see TrainRecipe / Augment / Stage fields") from err
    out = replace(recipe, **vals)
    check_recipe(out)
    return out


def check_recipe(r: TrainRecipe) -> None:
    if r.optimizer not in OPTIMIZERS:
        raise CellclassError(f"unknown optimizer {r.optimizer!r}", f"use one of {', '.join(OPTIMIZERS)}")
    if r.schedule not in SCHEDULES:
        raise CellclassError(f"unknown schedule {r.schedule!r}", f"use one of {', '.join(SCHEDULES)}")
    if r.epochs < 0 or r.batch_size < 1 or not r.lr > 0:
        raise CellclassError(f"epochs must be >= 0, batch size >= 1 and lr > 0 (got {r.epochs}, {r.batch_size}, {r.lr})")
    if not 0.0 <= r.freeze_fraction <= 1.0:
        raise CellclassError(f"freeze_fraction must be in [0, 1], got {r.freeze_fraction}")
    if r.freeze_blocks is not None and (not isinstance(r.freeze_blocks, int) or r.freeze_blocks < 0):
        raise CellclassError(f"freeze_blocks must be a whole number >= 0, got {r.freeze_blocks!r}")
    if not isinstance(r.cache_views, int) or r.cache_views < 0:
        raise CellclassError(f"cache_views must be a whole number >= 0, got {r.cache_views!r}",
                             "0 caches every view the augmentation reaches")
    if not 0.0 <= r.label_smoothing < 1.0:
        raise CellclassError(f"label_smoothing must be in [0, 1), got {r.label_smoothing}")
    for s in r.stages:
        if s.trainable not in ("head", "all"):
            raise CellclassError(f"stage trainable must be 'head' or 'all', got {s.trainable!r}")


def stages_of(r: TrainRecipe) -> list[Stage]:
    """The stages to run, each with its epoch count filled in."""
    if not r.stages:
        return [Stage("all", r.lr, r.epochs)]
    return [Stage(s.trainable, s.lr, r.epochs if s.epochs is None else s.epochs) for s in r.stages]


# ------------------------------------------------------------------ freezing
def classifiers(network: nn.Module) -> list[nn.Module]:
    """The single networks inside ``network`` (the members of an ensemble, else itself)."""
    members = getattr(network, "members", None)
    return list(members) if isinstance(members, nn.ModuleList) else [network]


def _head_params(net: nn.Module) -> set[int]:
    return {id(p) for name in _HEAD_NAMES if isinstance(getattr(net, name, None), nn.Module)
            for p in getattr(net, name).parameters()}


def _body_layers(net: nn.Module) -> list[nn.Module]:
    """Parameterised leaf layers outside the head, in definition order."""
    head = _head_params(net)
    out = []
    for m in net.modules():
        own = list(m.parameters(recurse=False))
        if own and not any(id(p) in head for p in own):
            out.append(m)
    return out


def set_trainable(network: nn.Module, stage: Stage, freeze_fraction: float, freeze_blocks: int | None = None) -> int:
    """Freeze per stage and fraction (or, when given, the stem and first ``freeze_blocks``
    blocks: see ``core.freeze_blocks``); return the number of trainable parameters."""
    for p in network.parameters():
        p.requires_grad_(True)
    for net in classifiers(network):
        head = _head_params(net)
        if stage.trainable == "head":
            if not head:
                raise CellclassError(f"{type(net).__name__} has no head to train alone", "use stages with trainable 'all'")
            for p in net.parameters():
                if id(p) not in head:
                    p.requires_grad_(False)
        elif freeze_blocks is not None:  # a block count replaces the fraction (e.g. a preset's)
            freeze_first_blocks(net, freeze_blocks)
        elif freeze_fraction > 0:
            layers = _body_layers(net)
            for m in layers[: int(round(freeze_fraction * len(layers)))]:
                for p in m.parameters(recurse=False):
                    p.requires_grad_(False)
    return sum(p.numel() for p in network.parameters() if p.requires_grad)


def train_mode(network: nn.Module) -> None:
    """``network.train()`` but frozen batch-norm layers keep their running statistics."""
    network.train()
    for m in network.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            ps = list(m.parameters(recurse=False))
            if ps and not any(p.requires_grad for p in ps):
                m.eval()


# ------------------------------------------------------------------ optimiser and schedule
def make_optimizer(network: nn.Module, r: TrainRecipe, lr: float) -> torch.optim.Optimizer:
    params = [p for p in network.parameters() if p.requires_grad]
    if not params:
        raise CellclassError("nothing to train: every parameter is frozen", "lower freeze_fraction or train 'all'")
    if r.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, betas=tuple(r.betas), weight_decay=r.weight_decay)
    if r.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=tuple(r.betas), weight_decay=r.weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=r.weight_decay)


class Schedule:
    """Per-epoch learning-rate policy: reduce on plateau (of the monitored loss) or cosine."""

    def __init__(self, opt: torch.optim.Optimizer, r: TrainRecipe, epochs: int) -> None:
        self.kind = r.schedule
        self.opt = opt
        if self.kind == "plateau":
            self.sched: Any = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode="min", factor=r.plateau_factor, patience=r.plateau_patience, threshold=r.min_delta,
                threshold_mode="abs")
        elif self.kind == "cosine":
            self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
        else:
            self.sched = None

    def epoch_end(self, monitored: float) -> None:
        if self.kind == "plateau" and math.isfinite(monitored):
            self.sched.step(monitored)
        elif self.kind == "cosine":
            self.sched.step()

    @property
    def lr(self) -> float:
        return float(self.opt.param_groups[0]["lr"])


# ------------------------------------------------------------------ loss
class Loss:
    """The loss of an output mode: softmax → cross-entropy, binary/sigmoid → BCE."""

    def __init__(self, output: str, r: TrainRecipe, class_weight: torch.Tensor | None = None) -> None:
        self.output = output
        self.smooth = r.label_smoothing
        self.weight = class_weight
        self.l1l2 = r.head_l1l2

    def __call__(self, logits: torch.Tensor, y: torch.Tensor, per_image: bool = False) -> torch.Tensor:
        """``y`` is (N, K) one-/multi-hot; logits (N, n_outputs) or maps (N, K, h, w).

        ``per_image``: the (N,) loss of each image (keep-best compares epochs image by image)."""
        logits = logits.float()
        w = None if self.weight is None else self.weight.to(logits.device)
        reduction = "none" if per_image else "mean"
        if self.output == "softmax":
            return F.cross_entropy(logits, y.argmax(1), weight=w, label_smoothing=self.smooth, reduction=reduction)
        if self.output == "binary":
            t = y[:, 1:2]
            pos = None if w is None else w[1:2] / w[0:1]  # weight of the positive class relative to the negative
        else:
            t = y  # (N, K), or (N, K, h, w) heat-map targets for an FCN
            pos = w
        if self.smooth:
            t = t * (1.0 - self.smooth) + 0.5 * self.smooth
        if pos is not None and logits.ndim == 4:
            pos = pos.view(1, -1, 1, 1)
        out = F.binary_cross_entropy_with_logits(logits, t.to(logits.dtype), pos_weight=pos, reduction=reduction)
        return out.flatten(1).mean(1) if per_image else out

    def penalty(self, network: nn.Module) -> torch.Tensor | float:
        """L1 + L2 on the hidden head layers (Keras ``l1_l2(0.01)`` of study 4)."""
        if not self.l1l2:
            return 0.0
        total: torch.Tensor | float = 0.0
        for w in _hidden_head_weights(network):
            total = total + self.l1l2 * (w.abs().sum() + (w * w).sum())
        return total


def _hidden_head_weights(network: nn.Module) -> Iterator[torch.Tensor]:
    for net in classifiers(network):
        hidden = getattr(getattr(net, "head", None), "hidden", None)
        if isinstance(hidden, nn.Module):
            for m in hidden.modules():
                if isinstance(m, nn.Linear) and m.weight.requires_grad:
                    yield m.weight
