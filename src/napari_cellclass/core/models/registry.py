"""The architectures of the five studies, by name, and :func:`build_network`.

Names are explicit entries (:data:`ARCHITECTURES`); any other timm model name is
accepted as a ``timm`` family spec.  Importing this module imports every family
module, each of which registers its builder in ``spec.FAMILIES``; families take
typed options only — no ``**kwargs`` pass-through to constructors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from ..errors import ArchitectureError
from . import ensemble, hybrid_svm  # noqa: F401  (register their families)
from .backbones import protein_net, small_cnns, timm_backbone  # noqa: F401  (register their families)
from .backbones.protein_net import PROTEIN_DEFAULTS
from .heads import HeadSpec, n_outputs
from .spec import FAMILIES, ArchSpec


@dataclass(frozen=True)
class ArchEntry:
    """A named, documented architecture with the defaults its study used."""

    spec: ArchSpec
    input_size: tuple[int, int]
    description: str
    pretrained: bool  # ImageNet weights exist for it
    min_input: int = 32  # smallest side its strided stem and pools accept


_MIN_INPUT = {"inception_resnet_v2": 75, "inception_v3": 75}


def _timm_entry(name: str, size: int, study: str, pool: str = "avg") -> ArchEntry:
    return ArchEntry(ArchSpec("timm", name, HeadSpec(pool=pool)), (size, size), f"timm {name} ({study})", True,
                     _MIN_INPUT.get(name, 32))


ARCHITECTURES: dict[str, ArchEntry] = {
    "inception_resnet_v2": _timm_entry("inception_resnet_v2", 299, "study 1 best model; study 4 member"),
    "mobilenetv2_100": _timm_entry("mobilenetv2_100", 224, "study 1 MobileNet; study 4 member"),
    "mobilenetv3_large_100": _timm_entry("mobilenetv3_large_100", 224, "a faster MobileNet"),
    "tf_efficientnetv2_b0": _timm_entry("tf_efficientnetv2_b0", 224, "study 3"),
    "inception_v3": _timm_entry("inception_v3", 299, "study 4 member; study 3 comparison"),
    "efficientnet_b4": _timm_entry("efficientnet_b4", 320, "study 4 member"),
    "densenet121": _timm_entry("densenet121", 224, "study 4 member"),
    "resnet50": _timm_entry("resnet50", 224, "study 4 member"),
    "legacy_xception": _timm_entry("legacy_xception", 299, "study 4 member (Xception)"),
    "tf_efficientnet_lite0": _timm_entry("tf_efficientnet_lite0", 224, "the built-in default model's backbone"),
    "scaffoldnet": ArchEntry(
        ArchSpec("convstack", "scaffoldnet",
                 HeadSpec(pool="avg", hidden=(32,), hidden_dropout=0.5, dropout=0.5),
                 (("pool_between", False), ("widths", (32, 32, 64)))),
        (128, 128), "ScaffoldNet, from scratch (study 2)", False),
    "senescence_cnn": ArchEntry(
        ArchSpec("convstack", "senescence_cnn",
                 HeadSpec(pool="max", hidden=(4,), hidden_dropout=0.5),
                 (("pool_between", True), ("widths", (6, 12, 24)))),
        (250, 300), "from-scratch CNN 6/12/24 filters (study 4)", False),
    "protein_cnn": ArchEntry(
        ArchSpec("protein_cnn", "protein_cnn",
                 HeadSpec(pool="avg", hidden=(256, 128), hidden_dropout=0.3, dropout=0.3),
                 tuple(sorted(PROTEIN_DEFAULTS.items()))),
        (256, 256), "10-conv base + 3 FC layers (study 5 CNN)", False),
    "protein_fcn": ArchEntry(
        ArchSpec("protein_fcn", "protein_fcn", HeadSpec(pool="max"), tuple(sorted(PROTEIN_DEFAULTS.items()))),
        (256, 256), "10-conv base, per-class heat maps, confidence = map max (study 5 FCN)", False),
}


def arch_entry(name: str) -> ArchEntry:
    """The registered entry for ``name``, or a plain timm entry for any timm model."""
    if name in ARCHITECTURES:
        return ARCHITECTURES[name]
    import timm

    if not timm.is_model(name):
        raise ArchitectureError(
            f"unknown architecture or preset {name!r}",
            "run `cellclass archs` for the list (any timm model name also works)",
        )
    cfg = timm.get_pretrained_cfg(name)
    size = tuple(cfg.input_size[-2:]) if cfg is not None and getattr(cfg, "input_size", None) else (224, 224)
    return ArchEntry(ArchSpec("timm", name, HeadSpec()), (int(size[0]), int(size[1])), f"timm {name}", cfg is not None)


def pretrained_mean_std(spec: ArchSpec) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """The mean/std a timm backbone's pretrained weights expect (ImageNet's, or 0.5/0.5
    for TF-ported EfficientNets); (None, None) for from-scratch families."""
    if spec.family == "ensemble" and spec.members:
        return pretrained_mean_std(spec.members[0])
    if spec.family != "timm":
        return None, None
    import timm

    cfg = timm.get_pretrained_cfg(spec.name)
    if cfg is None or not getattr(cfg, "mean", None):
        return None, None
    return tuple(float(v) for v in cfg.mean), tuple(float(v) for v in cfg.std)


def check_input_size(spec: ArchSpec, input_size: tuple[int, int]) -> None:
    """Refuse input sizes a network cannot process, before a cryptic error at run time."""
    names = [m.name for m in spec.members] if spec.family == "ensemble" else [spec.name]
    for name in names:
        need = ARCHITECTURES[name].min_input if name in ARCHITECTURES else 32
        if min(input_size) < need:
            raise ArchitectureError(
                f"input size {input_size[0]}x{input_size[1]} is too small for {name}",
                f"use at least {need}x{need} px",
            )


def list_architectures() -> list[dict[str, Any]]:
    """Registered architectures with their default input size and description."""
    return [
        {"name": n, "family": e.spec.family, "input_size": list(e.input_size),
         "pretrained_available": e.pretrained, "description": e.description}
        for n, e in ARCHITECTURES.items()
    ]


def build_network(spec: ArchSpec, in_chans: int, num_classes: int, output: str) -> nn.Module:
    """Instantiate ``spec`` with random weights (no downloads, ever)."""
    if in_chans < 1:
        raise ArchitectureError(f"in_chans must be at least 1, got {in_chans}")
    outputs = n_outputs(num_classes, output)
    if spec.family == "ensemble":
        from .ensemble import Ensemble

        return Ensemble([build_network(m, in_chans, num_classes, output) for m in spec.members], output, spec.vote)
    if spec.family not in FAMILIES:
        raise ArchitectureError(f"unknown architecture family {spec.family!r}")
    return FAMILIES[spec.family].build(spec, in_chans, outputs)


