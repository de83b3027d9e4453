"""pytorch_state_dict weights of a foreign bioimage.io package: allow-listed architectures only.

A spec-0.5 ``pytorch_state_dict`` entry names its architecture as a callable, either
imported from a library (``import_from`` + ``callable`` + ``kwargs``) or defined in a
Python source file shipped in the package.  Running either as written would execute
whatever the package says, so this module never imports a module a package names
and never runs its source: it maps the description onto the few builders it knows —

* timm models by registry name: ``timm.create_model`` with ``model_name``, or any
  ``timm…`` module with a registered timm model name as the callable;
* this project's :class:`CellclassPackageNet` (a package written by
  ``cellclass export-bioimageio`` whose ``config`` section was removed);

and refuses anything else with a message naming the fix (TorchScript weights, which
run here without the architecture's code).  The weights come in as plain tensors:
safetensors directly, a pickled ``.pt`` only through ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import ModelFileError

if TYPE_CHECKING:
    from .bioimageio_import import Package

OWN_MODULE = "napari_cellclass.core.models.bioimageio_net"
OWN_CALLABLE = "CellclassPackageNet"
#: create_model arguments that read files or fetch configurations (timm's checkpoint loader unpickles
#: without restriction): refused when set; the weights come from the package only
_LOADING_KWARGS = ("pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path", "cache_dir")
REFUSED_FIX = ("add TorchScript weights to the package (bioimageio.core's weight converter "
               "`pytorch_to_torchscript`, or torch.jit.trace of the network), which run here without the "
               "architecture's code; or name a timm model (import_from: timm, callable: create_model, "
               "kwargs: model_name)")


class ArchitectureRefused(ModelFileError):
    """The package's architecture is not on the allow-list (its TorchScript weights may still run)."""


def build_architecture(arch: Any, where: Path) -> nn.Module:
    """The untrained module a package's ``architecture`` describes, if it is on the allow-list."""
    if not isinstance(arch, dict):
        raise ArchitectureRefused(f"{where}: its pytorch_state_dict weights name no architecture", REFUSED_FIX)
    if arch.get("source"):
        raise ArchitectureRefused(
            f"{where}: its pytorch_state_dict architecture is Python source shipped in the package "
            f"({arch['source']}:{arch.get('callable', '?')}); napari-cellclass never runs code from a package",
            REFUSED_FIX)
    module, name = str(arch.get("import_from") or ""), str(arch.get("callable") or "")
    kwargs = arch.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ModelFileError(f"{where}: the architecture's kwargs are not a mapping", "the package is malformed")
    if module == "timm" or module.startswith("timm."):
        return timm_model(name, dict(kwargs), where)
    if module == OWN_MODULE and name == OWN_CALLABLE:
        return _own(kwargs, where)
    raise ArchitectureRefused(
        f"{where}: its pytorch_state_dict architecture {module or '?'}.{name or '?'} is not one napari-cellclass "
        "builds (timm models by name and its own networks; it never imports a module a package names)",
        REFUSED_FIX)


def timm_model(name: str, kwargs: dict[str, Any], where: Path) -> nn.Module:
    import timm

    if name == "create_model":
        name = str(kwargs.pop("model_name", "") or "")
    if not timm.is_model(name):
        raise ArchitectureRefused(f"{where}: its architecture names {name or 'no model'!r}, which is not a timm model",
                             REFUSED_FIX)
    refused = sorted(k for k in kwargs if k in _LOADING_KWARGS and kwargs[k] not in (None, False))
    if refused:
        raise ModelFileError(f"{where}: its timm architecture asks for {', '.join(refused)}, which would load "
                             "weights or configuration from outside the package", "remove those kwargs from the rdf")
    kwargs = {k: v for k, v in kwargs.items() if k not in _LOADING_KWARGS}
    kwargs.pop("pretrained", None)  # the package's state dict replaces any download the author's kwargs ask for
    try:
        model = timm.create_model(name, pretrained=False, **kwargs)
    except (TypeError, ValueError, KeyError, RuntimeError, AssertionError) as err:
        raise ModelFileError(f"{where}: timm cannot build {name} with the kwargs its rdf gives ({err})",
                             "the package's architecture kwargs are wrong for this timm version") from err
    model.timm_architecture = {"model_name": name, "kwargs": kwargs}  # what a model file records (fine-tuning)
    return model


def _own(kwargs: dict[str, Any], where: Path) -> nn.Module:
    from .bioimageio_net import CellclassPackageNet

    try:
        return CellclassPackageNet(**kwargs)  # its arch dict goes through ArchSpec.from_dict: registered families only
    except ModelFileError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as err:
        raise ModelFileError(f"{where}: the napari-cellclass architecture in its rdf is invalid ({err})",
                             "export the package again") from err


def read_state_dict(pkg: Package, entry: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights of a ``pytorch_state_dict`` entry as plain tensors, after the sha256 check."""
    data = pkg.file(entry, "pytorch_state_dict weights")  # raises on a missing file or a sha256 mismatch
    source = str(entry.get("source"))
    try:
        if source.lower().endswith(".safetensors"):
            from safetensors.torch import load

            state: Any = load(data)
        else:
            # weights_only=True is PyTorch's restricted unpickler: it admits tensors and primitive
            # containers (dict, list, tuple, str, numbers) only and refuses every other class or
            # function a pickle names, so nothing in the file can run code here.
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # both loaders raise assorted types on foreign bytes
        raise ModelFileError(f"{pkg.path}: the state-dict weights {source!r} cannot be read as plain tensors ({str(err)[:300]})",
                             "the package is damaged, or its weights hold more than tensors; " + REFUSED_FIX) from err
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ModelFileError(f"{pkg.path}: the state-dict weights {source!r} are not a mapping of names to tensors",
                             "save the weights with torch.save(model.state_dict()) or safetensors")
    return state


def state_dict_network(pkg: Package, entry: dict[str, Any]) -> nn.Module:
    """The allow-listed architecture with the package's weights loaded (strict unless the rdf says not)."""
    module = build_architecture(entry.get("architecture"), pkg.path)
    state = read_state_dict(pkg, entry)
    try:
        module.load_state_dict(state, strict=bool(entry.get("strict", True)))
    except RuntimeError as err:
        raise ModelFileError(f"{pkg.path}: the weights do not fit the architecture its rdf names ({str(err)[:300]})",
                             "the package's weights and architecture kwargs disagree; export it again") from err
    return module.eval()
