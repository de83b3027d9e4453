"""Freeze the stem and the first N blocks of a backbone (``TrainRecipe.freeze_blocks``).

What a "block" is, per family (the backbone is a timm model's ``backbone``, or the
project's own network itself):

* ``blocks`` or ``stages`` container (EfficientNet / EfficientNetV2, MobileNet,
  ConvNeXt, ViT …): each child of it is one block — a stage of same-resolution
  inverted-residual blocks for EfficientNets and MobileNets, a stage for ConvNeXt,
  one transformer block for ViTs.  The stem is everything before the container
  (``conv_stem``/``bn1``, ``stem``, ``patch_embed`` …).
* ``layer1`` … ``layerN`` (ResNet, ResNeXt, …): each ``layerK`` is a block; the
  stem is ``conv1``/``bn1``/``maxpool``.
* ``features`` with ``denseblockK`` (DenseNet): a dense block with the transition
  after it is a block; the stem is ``conv0``/``norm0``/``pool0``.
* ``features`` otherwise (the project's ScaffoldNet / senescence CNN: one
  convolution per block; the protein CNN / FCN: one conv-conv-BN-pool block each).
* anything else (Inception, Xception, …): each parameterised top-level module of
  the backbone in definition order (``Conv2d_1a_3x3``, ``Mixed_5b``, ``block1`` …).

Layers after the last counted block (``conv_head``, final norms) and the head
always stay trainable.  Unlike ``freeze_fraction``, which counts parameterised
layers (the Keras notion of study 3), this counts architectural units, so the same
N means the same depth whatever the width of the layers.
"""

from __future__ import annotations

import re

from torch import nn

from ..errors import CellclassError

_HEAD_NAMES = ("head", "classifier", "fc", "classif", "global_pool", "head_drop")


def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters())


def backbone_blocks(net: nn.Module) -> tuple[list[nn.Module], list[list[nn.Module]]]:
    """(stem modules, blocks — each a list of modules) of one classifier, in forward order."""
    body = net.backbone if isinstance(getattr(net, "backbone", None), nn.Module) else net
    top = [(n, m) for n, m in body.named_children() if n not in _HEAD_NAMES]
    names = [n for n, _ in top]
    for cname in ("blocks", "stages"):
        c = getattr(body, cname, None)
        if isinstance(c, (nn.Sequential, nn.ModuleList)) and cname in names:
            return [m for _, m in top[: names.index(cname)]], [[b] for b in c.children()]
    layers = [i for i, n in enumerate(names) if re.fullmatch(r"layer\d+", n)]
    if layers:
        return [m for _, m in top[: layers[0]]], [[top[i][1]] for i in layers]
    feats = getattr(body, "features", None)
    if isinstance(feats, nn.Sequential):
        sub = list(feats.named_children())
        dense = [i for i, (n, _) in enumerate(sub) if n.startswith("denseblock")]
        if dense:
            bounds = dense + [len(sub)]
            return [m for _, m in sub[: dense[0]]], [[m for _, m in sub[a:b]] for a, b in zip(bounds, bounds[1:])]
        return [], _param_groups([m for _, m in sub])
    return [], _param_groups([m for _, m in top])


def _param_groups(mods: list[nn.Module]) -> list[list[nn.Module]]:
    """One block per parameterised module; parameter-free ones (ReLU, pool) join the block before them."""
    out: list[list[nn.Module]] = []
    for m in mods:
        if _has_params(m):
            out.append([m])
        elif out:
            out[-1].append(m)
    return out


def freeze_first_blocks(net: nn.Module, n: int) -> None:
    """``requires_grad=False`` for the stem and the first ``n`` blocks of ``net``."""
    if n <= 0:
        return
    stem, blocks = backbone_blocks(net)
    if n > len(blocks):
        raise CellclassError(f"freeze_blocks={n} but {type(getattr(net, 'backbone', net)).__name__} has {len(blocks)} blocks",
                             f"use at most {len(blocks)} (or freeze_fraction for a share of the layers)")
    for m in stem + [m for b in blocks[:n] for m in b]:
        for p in m.parameters():
            p.requires_grad_(False)


__all__ = ["backbone_blocks", "freeze_first_blocks"]
