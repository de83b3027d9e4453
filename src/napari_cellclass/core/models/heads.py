"""Classifier heads and the one contract every network of the project honours.

The contract follows timm: ``forward_features(x)`` returns the last spatial feature
map (N, C, h, w) (tokens for transformers), ``forward_head(features)`` returns
logits, ``reset_classifier(n)`` swaps the output layer.  Explanation, fine-tuning
and ensembles reach networks only through these methods.

Outputs are *logits*; how they become probabilities is the ``output`` mode:
``softmax`` (single-label), ``sigmoid`` (multi-label, one logit per class) or
``binary`` (two classes, one logit for the second class — studies 2 and 4 end in
one sigmoid unit).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ArchitectureError

OUTPUT_MODES = ("softmax", "sigmoid", "binary")


@dataclass(frozen=True)
class HeadSpec:
    """pool → [dropout → linear → ReLU] per hidden width → dropout → linear."""

    pool: str = "avg"
    hidden: tuple[int, ...] = ()
    hidden_dropout: float = 0.0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.pool not in ("avg", "max"):
            raise ArchitectureError(f"head pool must be 'avg' or 'max', got {self.pool!r}")
        for p in (self.hidden_dropout, self.dropout):
            if not 0.0 <= p < 1.0:
                raise ArchitectureError(f"dropout must be in [0, 1), got {p}")
        if any(int(h) < 1 for h in self.hidden):
            raise ArchitectureError(f"hidden layer widths must be positive, got {self.hidden}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HeadSpec:
        return cls(
            pool=str(d.get("pool", "avg")),
            hidden=tuple(int(h) for h in d.get("hidden", ())),
            hidden_dropout=float(d.get("hidden_dropout", 0.0)),
            dropout=float(d.get("dropout", 0.0)),
        )


def n_outputs(num_classes: int, output: str) -> int:
    if output not in OUTPUT_MODES:
        raise ArchitectureError(f"unknown output mode {output!r}", f"use one of {', '.join(OUTPUT_MODES)}")
    if output == "binary":
        if num_classes != 2:
            raise ArchitectureError(f"output 'binary' needs exactly 2 classes, got {num_classes}")
        return 1
    if num_classes < 1 or (output == "softmax" and num_classes < 2):
        raise ArchitectureError(f"{num_classes} class(es) is too few for output {output!r}")
    return num_classes


def probabilities(logits: torch.Tensor, output: str) -> torch.Tensor:
    """Logits (N, n_outputs) → probabilities (N, K) for every output mode."""
    logits = logits.float()
    if output == "softmax":
        return logits.softmax(-1)
    p = logits.sigmoid()
    if output == "binary":
        return torch.cat([1.0 - p, p], dim=-1)
    return p


def logits_from_probabilities(p: torch.Tensor, output: str, eps: float = 1e-7) -> torch.Tensor:
    """Inverse of :func:`probabilities`, used to express averaged (ensemble) votes as logits."""
    p = p.clamp(eps, 1.0 - eps)
    if output == "softmax":
        return p.log()
    if output == "binary":
        p = p[:, 1:]
    return p.log() - (1.0 - p).log()


class MLPHead(nn.Module):
    """The configurable head of the studies, applied to pooled features (N, C)."""

    def __init__(self, in_features: int, num_outputs: int, spec: HeadSpec) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in spec.hidden:
            if spec.hidden_dropout:
                layers.append(nn.Dropout(spec.hidden_dropout))
            layers += [nn.Linear(width, int(h)), nn.ReLU(inplace=True)]
            width = int(h)
        self.hidden = nn.Sequential(*layers)
        self.drop = nn.Dropout(spec.dropout) if spec.dropout else nn.Identity()
        self.fc = nn.Linear(width, num_outputs)
        self.in_features = in_features

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.hidden(pooled)))

    def reset(self, num_outputs: int) -> None:
        self.fc = nn.Linear(self.fc.in_features, num_outputs).to(self.fc.weight.device)


def global_pool(features: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "max":
        return features.amax(dim=(-2, -1))
    return features.mean(dim=(-2, -1))


class Classifier(nn.Module):
    """Base of every single network: features → pool → head.

    ``cam_layer`` names the module whose output is the last spatial feature map, the
    default target of Grad-CAM.  ``head`` is an :class:`MLPHead`; when it has no
    hidden layer and the pool is linear, its weights give CAM directly.
    """

    cam_layer: str = ""
    head: MLPHead
    pool_kind: str = "avg"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def pool_features(self, features: torch.Tensor) -> torch.Tensor:
        return global_pool(features, self.pool_kind)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        pooled = self.pool_features(features)
        return pooled if pre_logits else self.head(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_outputs: int) -> None:
        self.head.reset(num_outputs)

    @property
    def num_outputs(self) -> int:
        return self.head.fc.out_features


def glorot_init(module: nn.Module) -> None:
    """Glorot/Xavier-uniform weights and zero biases (the Keras default of studies 2, 4, 5)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
