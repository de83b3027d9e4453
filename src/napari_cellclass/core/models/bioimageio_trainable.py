"""A foreign bioimage.io package's timm network as an ordinary, trainable model file.

A package loaded by ``bioimageio_import`` has the placeholder family ``bioimageio``:
its network lives in the package, which a ``.safetensors`` model file cannot point
to.  Packages whose ``pytorch_state_dict`` weights are an allow-listed timm model
(``bioimageio_foreign``) can become a normal model: the family ``bioimageio_timm``
registered here rebuilds the same :class:`PackageStateDict` — the timm model by name
and kwargs, the package's input axes, pre- and postprocessing steps (spec operations,
as data) and how its scores read — from the JSON a model file carries, so a saved
copy predicts exactly like the package, and fine-tuning it gives a model that saves,
loads and exports like any other.

TorchScript-only packages are compiled networks without an architecture this program
can rebuild or train: fine-tuning them is refused up front (:func:`trainable_bundle`).
"""

from __future__ import annotations

import copy
import json
import threading
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import CellclassError, ModelFileError
from .bioimageio_foreign import timm_model
from .bioimageio_net import CellclassPackageNet, PackageStateDict
from .bundle import ModelBundle
from .spec import ArchSpec, register_family

FOREIGN = "bioimageio"  # the family of a package loaded as it is
FAMILY = "bioimageio_timm"
_DEFAULTS = {"kwargs": "{}", "input_axes": '["batch", "channel", "y", "x"]', "preprocessing": "[]",
             "postprocessing": "[]", "scores": "logits", "output": "softmax"}
_SCORES = ("probabilities", "sigmoid", "logits")


@register_family(FAMILY, _DEFAULTS)
def build_package_timm(spec: ArchSpec, in_chans: int, num_outputs: int) -> nn.Module:
    """The :class:`PackageStateDict` a model file describes (random weights; nothing downloaded)."""
    opts = {k: _json(spec.option(k, v), k) for k, v in _DEFAULTS.items()}
    if not isinstance(opts["kwargs"], dict) or opts["scores"] not in _SCORES:
        raise ModelFileError(f"the bioimage.io timm architecture {spec.name!r} in the model file is malformed",
                             "re-save the model from napari-cellclass")
    kwargs = {**opts["kwargs"], "num_classes": int(num_outputs), "in_chans": int(in_chans)}
    module = timm_model(spec.name, kwargs, Path("the model file"))
    return PackageStateDict(module.eval(), list(opts["input_axes"]), list(opts["preprocessing"]),
                            list(opts["postprocessing"]), str(opts["scores"]), str(opts["output"]))


def _json(value: Any, key: str) -> Any:
    if key in ("scores", "output"):
        return str(value)
    try:
        return json.loads(str(value))
    except (json.JSONDecodeError, RecursionError) as err:
        raise ModelFileError(f"the model file's bioimage.io option {key!r} is not valid JSON ({err})",
                             "re-save the model from napari-cellclass") from err


def arch_of(network: nn.Module, where: str) -> ArchSpec:
    """The ``bioimageio_timm`` spec of a package's network as it is now (a new head changes it)."""
    if not isinstance(network, PackageStateDict):
        raise CellclassError(
            f"{where} has only TorchScript weights: a compiled network with no architecture napari-cellclass can "
            "rebuild or train, so it cannot be fine-tuned or saved as a .safetensors model",
            "use the package as it is for predictions; to fine-tune, use a package with pytorch_state_dict weights "
            "of a timm architecture, or start from a preset or architecture")
    timm_arch = getattr(network.backbone, "timm_architecture", None)
    if isinstance(network.backbone, CellclassPackageNet) or not isinstance(timm_arch, dict):
        raise CellclassError(
            f"{where}: its state-dict network ({type(network.backbone).__name__}) is not a timm model, so it "
            "cannot be fine-tuned or saved as a .safetensors model",
            "open the package napari-cellclass exported with its config section intact (it loads as the original "
            "model), or use a package of a timm architecture")
    kwargs = {k: v for k, v in dict(timm_arch["kwargs"]).items() if k not in ("num_classes", "in_chans")}
    options = {"kwargs": json.dumps(kwargs, sort_keys=True), "input_axes": json.dumps(list(network.input_axes)),
               "preprocessing": json.dumps(network.pre_steps), "postprocessing": json.dumps(network.post_steps),
               "scores": str(network.scores), "output": str(network.output)}
    return ArchSpec(FAMILY, str(timm_arch["model_name"]), options=tuple(sorted(options.items())))


def _source(bundle: ModelBundle) -> dict[str, Any]:
    """Which package the network came from: its name and the sha256 of the file that was opened."""
    from ..atomicfile import file_sha256

    info = bundle.provenance.get("bioimageio") or {}
    path = Path(str(bundle.provenance.get("loaded_from") or ""))
    if path.is_dir():
        path = next((path / n for n in ("rdf.yaml", "bioimageio.yaml") if (path / n).is_file()), path)
    sha = file_sha256(path) if path.is_file() else "unknown"
    name = str(info.get("name") or bundle.arch.name)
    return {"name": name, "path": str(path), "sha256": sha,
            "text": f"fine-tuned from bioimage.io package {name} (sha256 {sha})"}


def model_file_bundle(bundle: ModelBundle) -> ModelBundle:
    """``bundle`` ready for a model file: a package's network gets its ``bioimageio_timm``
    spec as it is now; every other bundle comes back unchanged."""
    if bundle.arch.family not in (FOREIGN, FAMILY):
        return bundle
    out = copy.copy(bundle)
    out.arch = arch_of(bundle.network, f"the bioimage.io package {bundle.arch.name!r}")
    return out


def trainable_bundle(bundle: ModelBundle) -> ModelBundle:
    """A bundle fine-tuning can start from: a foreign package's timm network as a ``bioimageio_timm``
    model (a copy, with the package in its provenance); TorchScript-only packages are refused here,
    before any training; other bundles come back unchanged."""
    if bundle.arch.family != FOREIGN:
        return bundle
    arch = arch_of(bundle.network, f"the bioimage.io package {bundle.arch.name!r}")
    out = copy.copy(bundle)
    out.arch, out.lock = arch, threading.RLock()
    src = _source(bundle)
    out.provenance = {**bundle.provenance, "fine_tuned_from": src["text"], "bioimageio_source": src}
    return out
