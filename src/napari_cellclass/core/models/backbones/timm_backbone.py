"""Any timm backbone behind the project's head (studies 1, 3 and 4).

timm builds the feature extractor (``num_classes=0``) and pools with its own
``forward_head(pre_logits=True)`` so transformers and CNNs alike give (N, C); our
:class:`MLPHead` then adds the studies' dropout / hidden layers / output layer.
A non-RGB ``in_chans`` is handled by timm, which adapts the first convolution of
pretrained weights.
"""

from __future__ import annotations

from torch import nn

from ...errors import ArchitectureError
from ..heads import Classifier, HeadSpec, MLPHead
from ..spec import ArchSpec, register_family


def create_backbone(name: str, in_chans: int, pool: str) -> nn.Module:
    import timm

    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:8]
        raise ArchitectureError(
            f"unknown architecture {name!r}",
            "see `cellclass archs` for the registered ones" + (f"; timm has e.g. {', '.join(close)}" if close else ""),
        )
    try:
        return timm.create_model(name, pretrained=False, num_classes=0, global_pool=pool, in_chans=in_chans)
    except TypeError:
        # a few timm families do not accept global_pool; they pool in their own way
        return timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_chans)


class TimmClassifier(Classifier):
    def __init__(self, name: str, in_chans: int, num_outputs: int, head: HeadSpec, cam_layer: str = "") -> None:
        super().__init__()
        self.backbone = create_backbone(name, in_chans, head.pool)
        self.pool_kind = head.pool
        width = getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features
        self.head = MLPHead(int(width), num_outputs, head)
        self.cam_layer = cam_layer or guess_cam_layer(self.backbone)
        self.timm_name = name

    def forward_features(self, x):
        return self.backbone.forward_features(x)

    def pool_features(self, features):
        return self.backbone.forward_head(features, pre_logits=True)


def guess_cam_layer(backbone: nn.Module) -> str:
    """Name of the module whose output is the feature map handed to the pool.

    In timm CNNs the children before ``global_pool`` end with the last spatial stage
    (``layer4``, ``Mixed_7c``, ``conv2d_7b``) or a conv head with its norm+activation
    (``bn2``, ``act4``); MobileNetV3's ``conv_head`` comes after the pool and is
    skipped by this rule.  Models without ``global_pool`` fall back to timm's
    ``feature_info``.
    """
    names = [n for n, _ in backbone.named_children()]
    if "global_pool" in names:
        before = [n for n in names[: names.index("global_pool")] if n not in ("flatten", "head_drop")]
        if before:
            return "backbone." + before[-1]
    info = getattr(backbone, "feature_info", None)
    if info:
        try:
            return "backbone." + info[-1]["module"]
        except (KeyError, IndexError, TypeError):
            pass
    return "backbone"


@register_family("timm", {"cam_layer": ""})
def _build_timm(spec: ArchSpec, in_chans: int, num_outputs: int) -> nn.Module:
    return TimmClassifier(spec.name, in_chans, num_outputs, spec.head, spec.option("cam_layer", ""))
