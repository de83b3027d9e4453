"""CAM (Zhou et al. 2016) from the classifier's own weights, in one forward pass.

For a head that is one linear layer on globally pooled features, the class score is
``sum_c w_kc · pool(A_c)``; the map ``sum_c w_kc · A_c`` shows where that sum comes
from.  Heads with hidden layers, or backbones that do more than pool between the
feature map and the head (MobileNetV3's conv head), have no such map: asking for
one is an error with a hint, never a silently wrong picture.  For an FCN the
classifier convolution itself gives the class maps.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import CellclassError
from ..models.heads import MLPHead, global_pool

_HINT = "use Grad-CAM (method 'gradcam'), which works for any head"


def check_cam_head(network: nn.Module) -> None:
    """Refuse heads that are not pool → (dropout →) one linear layer."""
    if getattr(network, "is_fcn", False):
        return
    head = getattr(network, "head", None)
    if not isinstance(head, MLPHead):
        what = "a kernel SVM (hybrid model)" if type(head).__name__ == "SVMHead" else type(head).__name__
        raise CellclassError(f"CAM needs a classifier head that is one linear layer on the pooled features, but this "
                             f"model's head is {what}, which has no per-location class weights", _HINT)
    if len(head.hidden) > 0:
        widths = [m.out_features for m in head.hidden if isinstance(m, nn.Linear)]
        raise CellclassError(f"CAM needs a head with one linear layer, but this one has hidden layers {widths}", _HINT)


def check_linear_pool(network: nn.Module, features: torch.Tensor) -> None:
    """The head must see exactly the global pool of the captured map."""
    if getattr(network, "is_fcn", False):
        return
    pooled = network.pool_features(features)
    plain = global_pool(features, network.pool_kind)
    if pooled.shape != plain.shape or not torch.allclose(pooled, plain, rtol=1e-4, atol=1e-5):
        raise CellclassError(
            "CAM needs the classifier to see the plain global pool of the feature map, "
            "but this backbone transforms the pooled features further (e.g. a conv head after the pool)", _HINT,
        )


def class_maps(network: nn.Module, output: str, features: torch.Tensor) -> torch.Tensor:
    """Per-class score maps (N, K, h, w) from the classifier weights (binary: 2 maps)."""
    if getattr(network, "is_fcn", False):
        z = network.classifier(features)
    else:
        w = network.head.fc.weight  # (n_out, C); dropout is the identity in eval mode
        z = torch.einsum("kc,nchw->nkhw", w.to(features.dtype), features)
    if output == "binary":
        z = torch.cat([-z, z], dim=1)
    return z
