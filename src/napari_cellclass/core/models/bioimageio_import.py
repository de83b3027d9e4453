"""Load a bioimage.io model package (spec 0.5) as a :class:`ModelBundle`.

A package is a zip with an ``rdf.yaml`` (or ``bioimageio.yaml``), or that file in an
unpacked folder.  It is read with a YAML *safe* loader and checked here — type,
spec version, a classification output, every used file present with the sha256 the
rdf names — so this works without the optional bioimageio libraries.  Nothing from a
package is unpickled: test tensors are ``.npy`` loaded with ``allow_pickle=False``,
state-dict weights from safetensors or with ``torch.load(weights_only=True)`` (PyTorch's
restricted loader: tensors and primitive containers only), TorchScript with
``torch.jit.load``, TorchScript's own format; no Python source from a package runs.

Packages written by napari-cellclass come back as the original model (architecture,
preprocessing, provenance, so explanations work).  A foreign package runs from its
pytorch_state_dict weights when their architecture is on the allow-list of
``bioimageio_foreign`` (timm models by name; explainable, :class:`PackageStateDict`),
otherwise from its TorchScript weights (:class:`PackageTorchScript`).
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ModelFileError
from .bioimageio_net import PackageTorchScript
from .bundle import ModelBundle

RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")
SUPPORTED = "0.5"
ARCH_MODULE = "napari_cellclass.core.models.bioimageio_net"


def is_package(path: Path) -> bool:
    """Whether ``path`` should be read as a bioimage.io package (by name; the contents are checked on load)."""
    name = path.name.lower()
    return name.endswith((".zip", ".bioimageio.yaml")) or name in RDF_NAMES or (
        path.is_dir() and any((path / n).is_file() for n in RDF_NAMES))


class Package:
    """The files of a package (zip or folder), each read once, sha256-checked against the rdf."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        if path.is_dir():
            self.root, names = path, [n for n in RDF_NAMES if (path / n).is_file()]
        elif path.suffix.lower() == ".zip":
            try:
                self._zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as err:
                raise ModelFileError(f"{path} is not a readable zip archive ({err})", "copy the package again") from err
            members = self._zip.namelist()
            names = [n for n in members if n in RDF_NAMES or n.endswith(".bioimageio.yaml")]
            self.root = path
            if not names:
                raise ModelFileError(f"{path} is a zip archive but not a bioimage.io package (no rdf.yaml or bioimageio.yaml "
                                     "at its top level)", "pass a model package downloaded from bioimage.io or written by "
                                     "`cellclass export-bioimageio`")
        else:
            self.root, names = path.parent, [path.name]
        self.rdf_name = names[0]
        self.rdf = self._parse(self.raw(self.rdf_name))

    def raw(self, name: str) -> bytes:
        try:
            if self._zip is not None:
                return self._zip.read(name)
            return (self.root / name).read_bytes()
        except (KeyError, OSError) as err:
            raise ModelFileError(f"{self.path}: the file {name!r} that its rdf names is missing from the package",
                                 "the package is incomplete; download or export it again") from err

    def _parse(self, data: bytes) -> dict[str, Any]:
        import yaml

        try:
            rdf = yaml.safe_load(data.decode("utf-8"))
        except (UnicodeDecodeError, yaml.YAMLError) as err:
            raise ModelFileError(f"{self.path}: {self.rdf_name} is not valid YAML ({err})", "the package is damaged") from err
        if not isinstance(rdf, dict):
            raise ModelFileError(f"{self.path}: {self.rdf_name} does not describe a resource", "the package is damaged")
        kind = rdf.get("type")
        if kind != "model":
            raise ModelFileError(f"{self.path}: its rdf describes a bioimage.io {kind or 'resource without a type'}, not a model",
                                 "pass a model package (type: model)")
        version = str(rdf.get("format_version", ""))
        if not (version == SUPPORTED or version.startswith(SUPPORTED + ".")):
            raise ModelFileError(f"{self.path}: bioimage.io model spec version {version or '(none)'} is not supported "
                                 f"(this program reads {SUPPORTED}.x)",
                                 "convert it with bioimageio.spec's update_format / `bioimageio update-format`, or export it again")
        return rdf

    def file(self, entry: Any, what: str) -> bytes:
        """Bytes of a file entry ({source, sha256}), checked against its sha256."""
        if not isinstance(entry, dict) or not isinstance(entry.get("source"), str):
            raise ModelFileError(f"{self.path}: the {what} has no file source in its rdf", "the package is malformed")
        source = entry["source"]
        if "://" in source:
            raise ModelFileError(f"{self.path}: the {what} is a download ({source}), not a file in the package",
                                 "download the complete package (zip) and open that")
        parts = source.replace("\\", "/").split("/")
        if source.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
            raise ModelFileError(f"{self.path}: the {what} {source!r} lies outside the package",
                                 "a package names its files relative to its rdf.yaml, inside it")
        data = self.raw(source)
        want = entry.get("sha256")
        if want and hashlib.sha256(data).hexdigest() != str(want).lower():
            raise ModelFileError(f"{self.path}: the {what} {source!r} does not match the sha256 in its rdf "
                                 "(the file was altered or damaged)", "download or export the package again")
        return data

    def npy(self, entry: Any, what: str) -> np.ndarray:
        try:
            return np.load(io.BytesIO(self.file(entry, what)), allow_pickle=False)
        except ValueError as err:
            raise ModelFileError(f"{self.path}: the {what} is not a plain .npy array ({err})", "the package is malformed") from err


def _one(rdf: dict[str, Any], key: str, where: Path) -> dict[str, Any]:
    tensors = rdf.get(key)
    if not isinstance(tensors, list) or len(tensors) != 1 or not isinstance(tensors[0], dict):
        raise ModelFileError(f"{where}: the package has {len(tensors) if isinstance(tensors, list) else 'no'} {key}; "
                             "this program runs classifiers with one input and one output", "pass an image classifier")
    return tensors[0]


def _axes(tensor: dict[str, Any]) -> list[dict[str, Any]]:
    return [a if isinstance(a, dict) else {} for a in tensor.get("axes") or []]


def _axis_name(a: dict[str, Any]) -> str:
    return str(a.get("id") or a.get("type"))


def _classes(output: dict[str, Any], where: Path) -> list[str]:
    axes = _axes(output)
    spatial = [a for a in axes if a.get("type") not in ("batch", "channel") and a.get("size") not in (1, None)]
    channel = [a for a in axes if a.get("type") == "channel"]
    if spatial or not channel:
        raise ModelFileError(f"{where}: the package's output is not one score per class (axes "
                             f"{[_axis_name(a) for a in axes]}); it is probably a segmentation or restoration model",
                             "this program runs image classifiers: an output with batch and channel axes")
    return [str(c) for c in channel[0].get("channel_names") or []]


def _scores(output: dict[str, Any], test_out: np.ndarray) -> tuple[str, str]:
    """How the package's output reads: ('probabilities'|'sigmoid'|'logits', project output mode)."""
    post = [s.get("id") for s in output.get("postprocessing") or [] if isinstance(s, dict)]
    y = test_out.reshape(test_out.shape[0], -1).astype(np.float64)
    in_unit = bool(np.all(y >= -1e-6) and np.all(y <= 1 + 1e-6))
    if "softmax" in post or (in_unit and np.allclose(y.sum(-1), 1.0, atol=1e-3)):
        return "probabilities", "softmax"
    if "sigmoid" in post or (in_unit and (output.get("data") or {}).get("range") == [0.0, 1.0]):
        return "sigmoid", "sigmoid"
    return "logits", "softmax"


def _input_size(inp: dict[str, Any], test_in: np.ndarray) -> tuple[list[str], tuple[int, int], int]:
    axes = _axes(inp)
    names = [_axis_name(a) for a in axes]
    if set(names) - {"batch", "channel", "y", "x"} or not {"y", "x"} <= set(names):
        raise ModelFileError(f"the package's input axes {names} are not a 2-D image", "this program runs 2-D classifiers (batch, channel, y, x)")
    shape = dict(zip(names, test_in.shape))  # the test input is a valid input by definition
    return names, (int(shape["y"]), int(shape["x"])), int(shape.get("channel", 1))


def load_package(path: str | os.PathLike, device: str | torch.device | None,
                 from_metadata: Callable[[dict[str, Any], str], ModelBundle]) -> ModelBundle:
    """Read a package; ``from_metadata`` is ``modelfile.bundle_from_metadata`` (passed in: no import cycle)."""
    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"model package {p} does not exist", "check the path")
    pkg = Package(p)
    rdf = pkg.rdf
    inp, out = _one(rdf, "inputs", p), _one(rdf, "outputs", p)
    classes = _classes(out, p)
    weights = rdf.get("weights") or {}
    if not isinstance(weights, dict):
        weights = {}
    own = ((rdf.get("config") or {}).get("napari_cellclass") or {}).get("model")
    sd = weights.get("pytorch_state_dict")
    if isinstance(own, dict) and isinstance(sd, dict) and (sd.get("architecture") or {}).get("import_from") == ARCH_MODULE:
        bundle = _own(pkg, own, sd, from_metadata)
    elif isinstance(sd, dict) or isinstance(weights.get("torchscript"), dict):
        bundle = _foreign(pkg, inp, out, classes, weights)
    else:
        raise ModelFileError(f"{p}: the package has no weights this program can run (it has: {', '.join(weights) or 'none'})",
                             "napari-cellclass runs TorchScript weights, and pytorch_state_dict weights of timm "
                             "models and its own networks")
    bundle.network.eval()
    if device is not None:
        from ..device import resolve_device

        bundle.network.to(resolve_device(device))
    bundle.provenance = {**bundle.provenance, "loaded_from": str(p),
                         "bioimageio": {**(bundle.provenance.get("bioimageio") or {}),
                                        "name": rdf.get("name"), "format_version": rdf.get("format_version"),
                                        "weights": getattr(bundle.network, "weights_format", "") or "pytorch_state_dict"}}
    return bundle


def _own(pkg: Package, meta: dict[str, Any], sd: dict[str, Any], from_metadata: Callable[..., ModelBundle]) -> ModelBundle:
    from .bioimageio_foreign import read_state_dict

    bundle = from_metadata(meta, str(pkg.path))
    state = read_state_dict(pkg, sd)
    prefix = "net."
    inner = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    try:
        bundle.network.load_state_dict(inner, strict=True)
    except RuntimeError as err:
        raise ModelFileError(f"{pkg.path}: the weights do not fit the architecture its rdf names ({str(err)[:200]})",
                             "the package was altered; export it again") from err
    return bundle


def _foreign_network(pkg: Package, weights: dict[str, Any]) -> tuple[type, torch.nn.Module]:
    """(wrapper class, module): allow-listed state-dict weights first (explainable), else TorchScript."""
    from .bioimageio_foreign import ArchitectureRefused, state_dict_network
    from .bioimageio_net import PackageStateDict

    sd, ts = weights.get("pytorch_state_dict"), weights.get("torchscript")
    if isinstance(sd, dict):
        try:
            return PackageStateDict, state_dict_network(pkg, sd)
        except ArchitectureRefused:
            # an architecture off the allow-list still runs from TorchScript weights; broken weights do not
            if not isinstance(ts, dict):
                raise
    try:
        script = torch.jit.load(io.BytesIO(pkg.file(ts, "TorchScript weights")), map_location="cpu")
    except RuntimeError as err:
        raise ModelFileError(f"{pkg.path}: the TorchScript weights cannot be loaded ({str(err)[:200]})",
                             "the package is damaged, or needs a newer PyTorch") from err
    return PackageTorchScript, script


def _foreign(pkg: Package, inp: dict[str, Any], out: dict[str, Any], classes: list[str], weights: dict[str, Any]) -> ModelBundle:
    from ..io.preprocess import Normalization, Preprocess
    from .spec import ArchSpec

    test_in = pkg.npy(inp.get("test_tensor"), "input test tensor")
    test_out = pkg.npy(out.get("test_tensor"), "output test tensor")
    names, size, in_chans = _input_size(inp, test_in)
    scores, mode = _scores(out, test_out)
    if not classes:
        classes = [f"class {i}" for i in range(int(np.prod(test_out.shape[1:])))]
    wrapper, module = _foreign_network(pkg, weights)
    net = wrapper(module, names, inp.get("preprocessing") or [], out.get("postprocessing") or [], scores, mode)
    channel = next((a for a in _axes(inp) if a.get("type") == "channel"), {})
    channel_names = [str(c) for c in channel.get("channel_names") or []] or [f"channel {i}" for i in range(in_chans)]
    # the package's own preprocessing runs inside the network; here only the resize to its input size
    pre = Preprocess(input_size=size, resize="squash", normalization=Normalization(method="none"))
    arch = ArchSpec("bioimageio", str(pkg.rdf.get("name") or "bioimage.io package"))
    return ModelBundle(net, classes, mode, in_chans, pre, arch, channel_names,
                       provenance={"description": str(pkg.rdf.get("description") or ""),
                                   "bioimageio": _network_info(net, inp, weights)})


def _network_info(net: torch.nn.Module, inp: dict[str, Any], weights: dict[str, Any]) -> dict[str, Any]:
    """What the model card says about a foreign package's network (its preprocessing runs inside it)."""
    info: dict[str, Any] = {"preprocessing": [str(s.get("id")) for s in inp.get("preprocessing") or [] if isinstance(s, dict)]}
    if getattr(net, "explain_unavailable", ""):
        info["explain"] = "not explainable (TorchScript weights only)"
        return info
    arch = (weights.get("pytorch_state_dict") or {}).get("architecture") or {}
    model = (arch.get("kwargs") or {}).get("model_name")
    info["architecture"] = f"{arch.get('import_from')}.{arch.get('callable')}" + (f" ({model})" if model else "")
    info["explain"] = f"Grad-CAM hooks {getattr(net, 'cam_layer', '') or 'the last convolution'}"
    return info


def package_test_tensors(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(test input, test output) of a package, sha256-checked."""
    pkg = Package(Path(path))
    inp, out = _one(pkg.rdf, "inputs", pkg.path), _one(pkg.rdf, "outputs", pkg.path)
    return pkg.npy(inp.get("test_tensor"), "input test tensor"), pkg.npy(out.get("test_tensor"), "output test tensor")
