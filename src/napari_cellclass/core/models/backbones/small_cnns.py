"""The from-scratch networks of studies 2 and 4, written as the papers describe them.

* ScaffoldNet (Akogo & Palmer 2019): conv3x3(32) → conv3x3(32) → conv3x3(64), ReLU,
  global average pool → dropout 0.5 → dense 32 ReLU → dropout 0.5 → output.
* Senescence CNN (Sorrentino et al. 2023): conv 6/12/24 filters 3x3 with a max pool
  between consecutive convolutions, global max pool → dropout → dense 4 ReLU →
  output.
Both use Glorot initialisation (Keras' default, which the studies trained with).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..heads import Classifier, HeadSpec, MLPHead, glorot_init
from ..spec import ArchSpec, register_family


@dataclass(frozen=True)
class ConvStackOptions:
    widths: tuple[int, ...]
    pool_between: bool


SCAFFOLDNET = ConvStackOptions(widths=(32, 32, 64), pool_between=False)
SENESCENCE_CNN = ConvStackOptions(widths=(6, 12, 24), pool_between=True)

SCAFFOLDNET_HEAD = HeadSpec(pool="avg", hidden=(32,), hidden_dropout=0.5, dropout=0.5)
SENESCENCE_CNN_HEAD = HeadSpec(pool="max", hidden=(4,), hidden_dropout=0.5, dropout=0.0)


class ConvStackClassifier(Classifier):
    """Plain 3x3 conv stack → global pool → MLP head."""

    def __init__(self, options: ConvStackOptions, in_chans: int, num_outputs: int, head: HeadSpec) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_chans
        for i, width in enumerate(options.widths):
            if options.pool_between and i > 0:
                layers.append(nn.MaxPool2d(2))
            layers += [nn.Conv2d(prev, int(width), 3, padding=1), nn.ReLU(inplace=True)]
            prev = int(width)
        self.features = nn.Sequential(*layers)
        self.pool_kind = head.pool
        self.head = MLPHead(prev, num_outputs, head)
        self.cam_layer = f"features.{len(layers) - 1}"
        glorot_init(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


@register_family("convstack", {"widths": (32, 32, 64), "pool_between": False})
def _build_convstack(spec: ArchSpec, in_chans: int, num_outputs: int) -> nn.Module:
    opts = ConvStackOptions(widths=tuple(int(w) for w in spec.option("widths")), pool_between=bool(spec.option("pool_between")))
    return ConvStackClassifier(opts, in_chans, num_outputs, spec.head)
