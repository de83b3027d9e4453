"""Which module a CAM hooks: chosen automatically, overridable by name.

Every network of the project records ``cam_layer``, the module whose output is the
feature map its head pools (``backbone.layer4`` for resnet50, ``backbone.conv2d_7b``
for inception_resnet_v2, ``backbone.blocks`` for MobileNetV3, ``backbone.bn2`` for
EfficientNets — the last block followed by its 1x1 conv head, on the same grid —
``features.4`` for the protein nets, the last ReLU for ScaffoldNet and the
senescence CNN).  That is the last spatial stage, and the layer whose Grad-CAM equals
CAM for pool→linear heads.  Ensembles resolve the name inside each member.
"""

from __future__ import annotations

from torch import nn

from ..errors import CellclassError

# module types whose output is never a useful map to explain
_SKIP = (nn.Dropout, nn.Identity, nn.Flatten, nn.Linear, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_MAX_DEPTH = 1  # stage.block is deep enough for a menu; deeper names can still be typed


def members(network: nn.Module) -> list[nn.Module]:
    """The single networks an explanation runs on (the members of an ensemble)."""
    inner = getattr(network, "members", None)
    return list(inner) if isinstance(inner, nn.ModuleList) else [network]


def default_layer(network: nn.Module) -> str:
    """Module name of the automatic target layer of one (non-ensemble) network."""
    name = getattr(network, "cam_layer", "") or ""
    if name:
        return name
    # a foreign network: the last Conv2d is the best guess without running it
    convs = [n for n, m in network.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise CellclassError("this network has no convolutional layer to explain",
                             "CAM methods need a CNN; pick a convolutional architecture")
    return convs[-1]


def resolve(network: nn.Module, name: str | None) -> tuple[str, nn.Module]:
    """(name, module) of ``name`` in one network; None → :func:`default_layer`."""
    if getattr(network, "explain_unavailable", ""):  # e.g. a TorchScript-only bioimage.io package
        raise CellclassError(network.explain_unavailable, getattr(network, "explain_fix", None))
    name = (name or "").strip() or default_layer(network)
    modules = dict(network.named_modules())
    if name not in modules:
        # accept timm-style 'blocks[-1]' / 'layer4[2]' and a missing 'backbone.' prefix
        alt = _alias(network, name)
        if alt is None:
            close = [n for n in modules if n and name.split(".")[-1] in n][:6]
            raise CellclassError(
                f"the network has no layer named {name!r}",
                "pick one from the list (`target_layers.layer_names`)" + (f", e.g. {', '.join(close)}" if close else ""),
            )
        name = alt
    return name, modules[name]


def _alias(network: nn.Module, name: str) -> str | None:
    modules = dict(network.named_modules())
    text = name.replace("]", "").replace("[", ".")
    for prefix in ("", "backbone.", "features."):
        parts = (prefix + text).split(".")
        module: nn.Module | None = network
        out: list[str] = []
        for p in parts:
            if module is None:
                break
            kids = dict(module.named_children())
            if p.lstrip("-").isdigit() and p not in kids:
                keys = list(kids)
                i = int(p)
                p = keys[i] if -len(keys) <= i < len(keys) else p
            module = kids.get(p)
            out.append(p)
        full = ".".join(out)
        if module is not None and full in modules:
            return full
    return None


def _spatial_roots(network: nn.Module) -> list[tuple[str, nn.Module]]:
    """The parts of a network that work on spatial maps (before the global pool)."""
    backbone = getattr(network, "backbone", None)
    if isinstance(backbone, nn.Module):
        kids = list(backbone.named_children())
        names = [n for n, _ in kids]
        if "global_pool" in names:
            kids = kids[: names.index("global_pool")]
        return [(f"backbone.{n}", m) for n, m in kids]
    roots = []
    for attr in ("features", "classifier"):
        m = getattr(network, attr, None)
        if isinstance(m, nn.Module) and (attr == "features" or isinstance(m, nn.Conv2d)):
            roots.append((attr, m))
    return roots or [(n, m) for n, m in network.named_children()]


def _names_of(network: nn.Module) -> list[str]:
    out: list[str] = []
    for root_name, root in _spatial_roots(network):
        for sub, m in root.named_modules():
            if isinstance(m, _SKIP) or (sub and sub.count(".") >= _MAX_DEPTH):
                continue
            out.append(root_name + ("." + sub if sub else ""))
    return out


def layer_names(network: nn.Module) -> list[str]:
    """Candidate target layers for a menu, in forward order; the automatic one first.

    For an ensemble, the names every member has (resolved inside each member).
    """
    nets = members(network)
    names = _names_of(nets[0])
    for other in nets[1:]:
        theirs = set(_names_of(other))
        names = [n for n in names if n in theirs]
    auto = default_layer(nets[0])
    return [auto, *[n for n in names if n != auto]] if all(default_layer(m) == auto for m in nets) else names
