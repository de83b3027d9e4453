"""The CNN and FCN of the protein-localisation study (Liimatainen et al. 2021).

Base network: 5 blocks of [conv3x3 → ReLU → conv3x3 → ReLU → batch-norm → max-pool],
kernels doubling each block (10 conv layers), Glorot initialisation.
* CNN: base + 3 fully connected layers (2 hidden + output).
* FCN: base without the last max-pool + one conv layer with one kernel per class →
  per-class logit maps (16x16 for a 256x256 input); the image-level logit of a class
  is the maximum of its map, so "confidence = max of the sigmoid heat map" holds.
The paper does not give the first block's width or the FC widths; 16 and (256, 128)
are our defaults, recorded in every model file and overridable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..heads import Classifier, HeadSpec, MLPHead, glorot_init
from ..spec import ArchSpec, register_family


@dataclass(frozen=True)
class ProteinNetOptions:
    base_width: int = 16
    blocks: int = 5
    fcn_kernel: int = 1


PROTEIN_CNN_HEAD = HeadSpec(pool="avg", hidden=(256, 128), hidden_dropout=0.3, dropout=0.3)
PROTEIN_FCN_HEAD = HeadSpec(pool="max")


def _base(in_chans: int, options: ProteinNetOptions, last_pool: bool) -> tuple[nn.Sequential, int]:
    blocks: list[nn.Module] = []
    prev = in_chans
    for i in range(options.blocks):
        width = options.base_width * 2**i
        block: list[nn.Module] = [
            nn.Conv2d(prev, width, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True),
            nn.BatchNorm2d(width),
        ]
        if last_pool or i < options.blocks - 1:
            block.append(nn.MaxPool2d(2))
        blocks.append(nn.Sequential(*block))
        prev = width
    return nn.Sequential(*blocks), prev


class ProteinCNN(Classifier):
    def __init__(self, options: ProteinNetOptions, in_chans: int, num_outputs: int, head: HeadSpec) -> None:
        super().__init__()
        self.features, width = _base(in_chans, options, last_pool=True)
        self.pool_kind = head.pool
        self.head = MLPHead(width, num_outputs, head)
        self.cam_layer = f"features.{options.blocks - 1}"
        glorot_init(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class ProteinFCN(Classifier):
    """Fully convolutional: ``forward_maps`` gives per-class logit maps."""

    is_fcn = True

    def __init__(self, options: ProteinNetOptions, in_chans: int, num_outputs: int, head: HeadSpec) -> None:
        super().__init__()
        self.features, width = _base(in_chans, options, last_pool=False)
        self.pool_kind = "max"
        k = options.fcn_kernel
        self.classifier = nn.Conv2d(width, num_outputs, k, padding=k // 2)
        self.cam_layer = f"features.{options.blocks - 1}"
        glorot_init(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Per-class logit maps (N, K, h, w); sigmoid gives the study's heat maps."""
        return self.classifier(self.forward_features(x))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if pre_logits:
            return features.amax(dim=(-2, -1))
        return self.classifier(features).amax(dim=(-2, -1))

    def reset_classifier(self, num_outputs: int) -> None:
        old = self.classifier
        self.classifier = nn.Conv2d(old.in_channels, num_outputs, old.kernel_size, padding=old.padding).to(old.weight.device)

    @property
    def num_outputs(self) -> int:
        return self.classifier.out_channels


PROTEIN_DEFAULTS = {"base_width": 16, "blocks": 5, "fcn_kernel": 1}


@register_family("protein_cnn", PROTEIN_DEFAULTS)
@register_family("protein_fcn", PROTEIN_DEFAULTS)
def _build_protein(spec: ArchSpec, in_chans: int, num_outputs: int) -> nn.Module:
    opts = ProteinNetOptions(int(spec.option("base_width")), int(spec.option("blocks")), int(spec.option("fcn_kernel")))
    cls = ProteinFCN if spec.family == "protein_fcn" else ProteinCNN
    return cls(opts, in_chans, num_outputs, spec.head)
