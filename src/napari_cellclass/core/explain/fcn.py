"""FCN heat maps (study 5): the model's own per-class probability maps.

An FCN's class logit is the maximum of its logit map, so the sigmoid of the map is
the per-location confidence and its maximum is the image's confidence.  The maps
are returned as probabilities and never rescaled.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import CellclassError
from ..models.heads import probabilities


def check_fcn(network: nn.Module, arch: str = "this model") -> None:
    if not getattr(network, "is_fcn", False):
        raise CellclassError(
            f"FCN heat maps need a fully convolutional (FCN) model, and {arch} is not one",
            "choose Grad-CAM or another CAM method, or load an FCN model (preset protein-localization-fcn)",
        )


def probability_maps(network: nn.Module, output: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(image logits (N, n_out), per-class probability maps (N, K, h, w))."""
    z = network.forward_maps(x)
    n, c, h, w = z.shape
    flat = z.permute(0, 2, 3, 1).reshape(-1, c)
    p = probabilities(flat, output).reshape(n, h, w, -1).permute(0, 3, 1, 2)
    return z.amax(dim=(2, 3)), p
