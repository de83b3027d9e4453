"""The networks a bioimage.io package holds, and the one that runs a foreign package here.

:class:`CellclassPackageNet` is what an exported package's ``pytorch_state_dict``
weights instantiate (its ``architecture`` names this module): the project's network
built from the registry by its JSON description, the part of the preprocessing the
spec cannot express (per-image statistics as this project computes them), and the
activation, so the package's output is class probabilities.  Its TorchScript
weights are this same module, traced.

:class:`PackageNetwork` runs a foreign package's network inside the project's
pipeline: the package's own preprocessing (spec operations, in torch), the axis order
it wants, and its scores turned back into logits so that the project's
``softmax``/``sigmoid`` output modes reproduce the package's probabilities.
:class:`PackageTorchScript` holds TorchScript weights of any origin (not explainable);
:class:`PackageStateDict` an allow-listed architecture with the package's state dict
(``bioimageio_foreign``), which Grad-CAM hooks like the project's own networks.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import CellclassError
from ..io.preprocess import Normalization
from .heads import logits_from_probabilities, probabilities
from .registry import build_network
from .spec import ArchSpec

#: what explain says for a package that has only TorchScript weights
TORCHSCRIPT_ONLY = (
    "this bioimage.io package has only TorchScript weights: a compiled network whose layers cannot be hooked, "
    "so Grad-CAM and the other CAM methods cannot run on it"
)
TORCHSCRIPT_FIX = ("predictions work as usual; for explanations use a package with pytorch_state_dict weights "
                   "of an architecture napari-cellclass builds (a timm model by name, or a package written by "
                   "`cellclass export-bioimageio`)")

# the canonical layout inside the project: (batch, channel, y, x)
_CANONICAL = ("batch", "channel", "y", "x")


def normalization_from_dict(d: dict[str, Any] | None) -> Normalization | None:
    if not d:
        return None
    d = dict(d)
    for key in ("mean", "std"):
        if d.get(key) is not None:
            d[key] = tuple(float(v) for v in d[key])
    return Normalization(**d)


class CellclassPackageNet(nn.Module):
    """Raw (or spec-preprocessed) input (N, C, H, W) → class probabilities (N, K)."""

    def __init__(self, arch: dict[str, Any], in_chans: int, classes: list[str], output: str,
                 normalization: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.net = build_network(ArchSpec.from_dict(arch), int(in_chans), len(classes), str(output))
        self.output = str(output)
        # normalisation the spec cannot state exactly, e.g. this project's order-statistic percentiles
        self.norm = normalization_from_dict(normalization)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm is not None:
            x = self.norm.apply(x)
        return probabilities(self.net(x), self.output)


class PackageNetwork(nn.Module):
    """A foreign package's network behind the project's contract: (N, C, H, W) in, logits out.

    ``model`` takes the package's axis order; the package's own preprocessing (spec
    operations, in torch) runs before it, its postprocessing after, and its scores are
    turned back into logits.
    """

    is_fcn = False
    weights_format = ""

    def __init__(self, model: nn.Module, input_axes: list[str], preprocessing: list[dict[str, Any]],
                 postprocessing: list[dict[str, Any]], scores: str, output: str) -> None:
        super().__init__()
        from .bioimageio_ops import compile_ops

        self.attach(model)
        self.input_axes = list(input_axes)
        # the spec steps as the rdf gives them: a model file records them to rebuild this network
        self.pre_steps, self.post_steps = list(preprocessing), list(postprocessing)
        self.pre = compile_ops(preprocessing, _CANONICAL)
        self.post = compile_ops(postprocessing, ("batch", "channel"))
        self.scores = scores  # "probabilities" (softmax), "sigmoid" or "logits"
        self.output = output

    def attach(self, model: nn.Module) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def model(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        for op in self.pre:
            x = op(x)
        y = self.model(to_layout(x, self.input_axes))
        y = y.reshape(y.shape[0], -1).float()
        for op in self.post:
            y = op(y)
        if self.scores == "logits":
            return y
        return logits_from_probabilities(y, self.output)


class PackageTorchScript(PackageNetwork):
    """A TorchScript network of any origin: predicts, but cannot be explained."""

    explain_unavailable = TORCHSCRIPT_ONLY
    explain_fix = TORCHSCRIPT_FIX
    weights_format = "torchscript"

    def attach(self, model: nn.Module) -> None:
        self.script = model

    def model(self, x: torch.Tensor) -> torch.Tensor:
        return self.script(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise CellclassError(TORCHSCRIPT_ONLY, TORCHSCRIPT_FIX)


class PackageStateDict(PackageNetwork):
    """An allow-listed architecture (a timm model, or this project's network) with the package's
    state dict: an ordinary module, so Grad-CAM hooks the feature map its head pools."""

    weights_format = "pytorch_state_dict"

    def attach(self, model: nn.Module) -> None:
        self.backbone = model
        self.cam_layer = state_dict_cam_layer(model)

    def model(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def reset_classifier(self, num_outputs: int) -> None:
        """A new output layer (fine-tuning to other classes): it gives logits, so the package's
        postprocessing of its old scores no longer applies."""
        if not hasattr(self.backbone, "reset_classifier"):
            raise CellclassError(f"the package's network ({type(self.backbone).__name__}) cannot get a new output layer",
                                 "fine-tune to the package's own classes, or start from a preset or architecture")
        self.backbone.reset_classifier(num_outputs)
        self.post, self.post_steps, self.scores = [], [], "logits"


def state_dict_cam_layer(model: nn.Module) -> str:
    """The layer Grad-CAM hooks in :class:`PackageStateDict` (the module is its ``backbone``),
    found as for the project's own networks: the feature map the head pools."""
    if isinstance(model, CellclassPackageNet):
        inner = getattr(model.net, "cam_layer", "") or _last_conv(model.net)
        return f"backbone.net.{inner}" if inner else ""
    if hasattr(model, "global_pool") or hasattr(model, "feature_info"):  # a timm model
        from .backbones.timm_backbone import guess_cam_layer

        return guess_cam_layer(model)  # already prefixed "backbone."
    conv = _last_conv(model)
    return f"backbone.{conv}" if conv else ""


def _last_conv(model: nn.Module) -> str:
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    return convs[-1] if convs else ""


def to_layout(x: torch.Tensor, axes: list[str]) -> torch.Tensor:
    """(N, C, H, W) → the package's axis order; an axis the package lacks must have size 1 here."""
    dims = {a: i for i, a in enumerate(_CANONICAL)}
    for a in _CANONICAL:
        if a not in axes and x.shape[dims[a]] != 1:
            raise CellclassError(f"the package's input has no {a} axis, but the image has {x.shape[dims[a]]} along it",
                                 "give the package images of the layout its rdf.yaml describes")
    keep = [a for a in _CANONICAL if a in axes]
    y = x.reshape([x.shape[dims[a]] for a in keep])  # drops the singleton axes, order unchanged
    return y.permute(*[keep.index(a) for a in axes])
