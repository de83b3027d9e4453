"""``build_model``: a ready bundle from a preset, an architecture name, or a list of them.

Presets are the five studies' models with their preprocessing (``presets.studies``);
architecture names come from the registry (or any timm model).  Weights are random,
timm's pretrained ones, the offline EfficientNet-Lite0 package, or a local file.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ArchitectureError
from ..io.preprocess import Normalization, Preprocess
from ..models.bundle import ModelBundle
from ..models.heads import HeadSpec
from ..models.modelfile import is_model_file, now
from ..models.registry import arch_entry, build_network, check_input_size, pretrained_mean_std
from ..models.spec import ArchSpec, ensemble_spec, with_head
from ..models.weights import load_weights, pretrained_backbone_state
from .studies import PRESETS


def _versions() -> dict[str, str]:
    import numpy
    import timm

    from ..._version import __version__

    return {"napari_cellclass": __version__, "torch": torch.__version__, "timm": timm.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}



def build_model(
    arch_or_preset: str | list[str],
    classes: list[str] | tuple[str, ...] | None = None,
    in_chans: int | None = None,
    pretrained: bool | None = None,
    weights: str | os.PathLike | None = None,
    *,
    output: str | None = None,
    input_size: tuple[int, int] | None = None,
    preprocess: Preprocess | None = None,
    channel_names: list[str] | None = None,
    head: HeadSpec | None = None,
) -> ModelBundle:
    """A ready-to-use bundle from a preset name, an architecture name, or a list of
    architecture names (a soft-voting ensemble).

    ``pretrained`` defaults to the preset's choice, else False.  ``weights`` is a local
    file (timm state dict or a napari-cellclass model) used instead of a download.
    ``head`` (pooling, dropout, hidden layers) replaces the architecture's or preset's
    head — every member's in an ensemble.
    """
    preset = PRESETS.get(arch_or_preset) if isinstance(arch_or_preset, str) else None
    if preset is not None:
        spec = preset.arch
        classes = list(classes) if classes else list(preset.classes)
        in_chans = in_chans or preset.in_chans
        output = output or preset.output
        pre = preprocess or preset.preprocess
        pretrained = preset.pretrained if pretrained is None else pretrained
        names = channel_names or (list(preset.channel_names) if in_chans == preset.in_chans else None)
    else:
        if isinstance(arch_or_preset, (list, tuple)):
            entries = [arch_entry(n) for n in arch_or_preset]
            spec = ensemble_spec([e.spec for e in entries])
            size = entries[0].input_size
        else:
            entry = arch_entry(arch_or_preset)
            spec, size = entry.spec, entry.input_size
        if not classes:
            raise ArchitectureError("no class names given", "pass classes=[...] (or use a preset, which has its own)")
        classes = list(classes)
        in_chans = in_chans or 3
        output = output or "softmax"
        mean, std = pretrained_mean_std(spec) if in_chans == 3 else (None, None)
        pre = preprocess or Preprocess(input_size=size, normalization=Normalization("meanstd", mean=mean, std=std))
        pretrained = bool(pretrained)
        names = channel_names
    if input_size is not None:
        pre = Preprocess(tuple(input_size), pre.resize, pre.interpolation, pre.normalization)
    pre = Preprocess(pre.input_size, pre.resize, pre.interpolation, pre.normalization.for_channels(in_chans))

    if head is not None:
        spec = _with_head(spec, head)
    spec = spec.canonical()
    check_input_size(spec, pre.input_size)
    network = build_network(spec, in_chans, len(classes), output)
    weight_report: list[Any] = []
    if weights is not None:
        weight_report.append(_load_local(network, weights, in_chans))
    elif pretrained:
        for name, sub in _timm_parts(spec, network):
            state, source = pretrained_backbone_state(name, in_chans)
            if state:
                sub.backbone.load_state_dict(state, strict=True)
                weight_report.append({"backbone": name, "source": source})
            else:  # offline package file
                weight_report.append({"backbone": name, **load_weights(sub, source, in_chans)})
        if not weight_report:
            raise ArchitectureError(
                f"no pretrained weights exist for {spec.describe()} (it is trained from scratch)",
                "build it with pretrained=False",
            )
    network.eval()
    provenance = {
        "created": now(),
        "preset": preset.name if preset else None,
        "weights": weight_report or "random initialisation",
        "versions": _versions(),
    }
    return ModelBundle(network, classes, output, in_chans, pre, spec, names or [], None, provenance)


def _with_head(spec: ArchSpec, head: HeadSpec) -> ArchSpec:
    if spec.family == "ensemble":
        return ArchSpec(spec.family, spec.name, spec.head, spec.options, tuple(_with_head(m, head) for m in spec.members),
                        spec.vote)
    if spec.family in ("protein_fcn", "hybrid_svm"):
        # an FCN's head is a conv layer that keeps the maps; a hybrid's is an SVM fitted later
        raise ArchitectureError(f"{spec.describe()} has no configurable pooling/dense head",
                                "leave the head options out for this architecture")
    return with_head(spec, head)


def _timm_parts(spec: ArchSpec, network: nn.Module) -> list[tuple[str, nn.Module]]:
    if spec.family == "ensemble":
        return [p for m_spec, m in zip(spec.members, network.members) for p in _timm_parts(m_spec, m)]
    return [(spec.name, network)] if spec.family == "timm" else []


def _load_local(network: nn.Module, weights: str | os.PathLike, in_chans: int) -> dict[str, Any]:
    path = Path(weights)
    if path.suffix == ".safetensors" and is_model_file(path):
        # multi-stage transfer: start from another napari-cellclass model's network
        return {"from_model": str(path), **load_weights(network, path, in_chans)}
    return load_weights(network, path, in_chans)
