"""Export a model as a BioImage Model Zoo package (bioimage.io model spec 0.5).

The package holds the rdf.yaml, TorchScript weights (for Java consumers: deepImageJ,
QuPath, ilastik's runners), pytorch_state_dict weights of :class:`CellclassPackageNet`,
test tensors from a real sample, a cover (the sample under its Grad-CAM map) and the
documentation generated from the model card.  The description is built and validated
by ``bioimageio.spec`` (an optional extra), and the zip is written atomically.
"""

from __future__ import annotations

import copy
import io
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import CellclassError, ModelFileError

if TYPE_CHECKING:
    from .bundle import ModelBundle

INSTALL_HINT = 'install the optional extra: pip install "napari-cellclass[bioimageio]" (see the README for bioimageio.core)'
DEFAULT_CITE = [{"text": "Wightman, R. PyTorch Image Models (timm)", "doi": "10.5281/zenodo.4414861"}]
SPEC_MODULE = "bioimageio.spec"
ARCH_MODULE = "napari_cellclass.core.models.bioimageio_net"
ARCH_CALLABLE = "CellclassPackageNet"
#: how far the package's output may drift from the model's own pipeline before export refuses
SELF_CHECK_TOL = 1e-4

Explainer = Callable[["ModelBundle", np.ndarray, "float | None"], np.ndarray]


def require_spec() -> Any:
    from importlib import import_module

    try:
        spec = import_module(SPEC_MODULE)
    except ImportError as err:
        raise CellclassError("exporting a bioimage.io package needs the bioimageio.spec library, which is not installed",
                             INSTALL_HINT) from err
    return spec


def _plain(value: Any) -> Any:
    """JSON-safe copy (tuples → lists, NaN → None) so YAML and pydantic accept it."""
    text = json.dumps(value, default=str).replace("NaN", "null")
    return json.loads(text)


def test_input(bundle: ModelBundle, chw: np.ndarray, value_max: float | None, value_range: float) -> tuple[np.ndarray, np.ndarray]:
    """(raw crop at the model's input size in the package's units (1, C, h, w), the crop itself)."""
    from ..io.geometry import plan, resample

    geom = plan(tuple(chw.shape[-2:]), bundle.input_size, "crop")
    y0, x0, y1, x1 = geom.src_box
    crop = np.ascontiguousarray(chw[:, y0:y1, x0:x1], np.float32)
    x = resample(torch.from_numpy(crop)[None], bundle.input_size, bundle.preprocess.interpolation)
    if bundle.preprocess.normalization.method == "meanstd" and value_max:
        x = x * (value_range / value_max)  # the package's declared units for raw values
    return x.numpy().astype(np.float32), crop


def package_network(bundle: ModelBundle, baked: Any) -> torch.nn.Module:
    from .bioimageio_net import CellclassPackageNet

    meta = bundle.metadata()
    kwargs = _plain({"arch": meta["arch"], "in_chans": bundle.in_chans, "classes": bundle.classes,
                     "output": bundle.output, "normalization": None if baked is None else vars(baked)})
    net = CellclassPackageNet(**kwargs)
    with bundle.lock:
        net.net.load_state_dict(copy.deepcopy(bundle.network.state_dict()))
    return net.eval().cpu(), kwargs


def _self_check(bundle: ModelBundle, crop: np.ndarray, value_max: float | None, y: np.ndarray) -> None:
    """The package must predict what the model predicts on the same crop through its own pipeline."""
    from .heads import probabilities

    vm = None if value_max is None else torch.tensor([value_max])
    x, _ = bundle.preprocess.prepare_batch(torch.from_numpy(crop)[None], vm)
    with bundle.lock, torch.inference_mode():
        net = copy.deepcopy(bundle.network).cpu().eval()
        p = probabilities(net(x), bundle.output).numpy()
    diff = float(np.abs(p - y).max())
    if diff > SELF_CHECK_TOL:
        raise ModelFileError(f"the exported network disagrees with the model by {diff:.2g} on the sample",
                             "this is a bug in the export; please report it with the model's card")


def _write_weights(net: torch.nn.Module, x_pre: torch.Tensor, folder: Path) -> np.ndarray:
    with torch.inference_mode():
        y = net(x_pre).numpy()
    torch.save(net.state_dict(), folder / "weights.pt")
    with torch.no_grad():
        traced = torch.jit.trace(net, x_pre, check_trace=False)
    buf = io.BytesIO()
    torch.jit.save(traced, buf)
    (folder / "weights_torchscript.pt").write_bytes(buf.getvalue())
    with torch.inference_mode():
        y_ts = torch.jit.load(io.BytesIO(buf.getvalue())).eval()(x_pre).numpy()
    if float(np.abs(y_ts - y).max()) > SELF_CHECK_TOL:
        raise ModelFileError("the TorchScript trace of this network does not reproduce it",
                             "this architecture cannot be exported as TorchScript; please report it")
    return y


def build_rdf(bundle: ModelBundle, kwargs: dict[str, Any], spec_ops: list[dict[str, Any]], *, authors: Sequence[str],
              license: str, cite: Sequence[dict[str, str]], name: str | None, value_range: float,
              baked: bool) -> dict[str, Any]:
    """The rdf.yaml content, as a dict (bioimageio.spec validates it)."""
    from ..._version import __version__

    h, w = bundle.input_size
    about = str(bundle.provenance.get("description") or "")
    description = (about.split(". ")[0][:500] + ".") if about else (
        f"{bundle.arch.describe()} classifying {bundle.in_chans}-channel crops into {', '.join(bundle.classes)}.")
    ts_version = torch.__version__.split("+")[0]
    return {
        "type": "model", "format_version": "0.5.4",
        "name": (name or f"napari-cellclass {bundle.arch.name} classifier")[:128],
        "description": description[:1024],
        "authors": [{"name": a} for a in authors], "cite": list(cite), "license": license,
        "tags": ["classification", "2d", "pytorch", "napari-cellclass", *bundle.classes[:8]],
        "documentation": "README.md", "covers": ["cover.png"],
        "inputs": [{
            "id": "image", "description": f"{', '.join(bundle.channel_names)} crop"[:128],
            "axes": [{"type": "batch"}, {"type": "channel", "channel_names": list(bundle.channel_names)},
                     {"type": "space", "id": "y", "size": h}, {"type": "space", "id": "x", "size": w}],
            "test_tensor": {"source": "test_input.npy"}, "data": {"type": "float32"},
            "preprocessing": spec_ops,
        }],
        "outputs": [{
            "id": "probabilities", "description": f"{bundle.output} probability per class",
            "axes": [{"type": "batch"}, {"type": "channel", "channel_names": list(bundle.classes)}],
            "test_tensor": {"source": "test_output.npy"}, "data": {"type": "float32", "range": [0.0, 1.0]},
        }],
        "weights": {
            "pytorch_state_dict": {
                "source": "weights.pt", "pytorch_version": ts_version,
                "architecture": {"callable": ARCH_CALLABLE, "import_from": ARCH_MODULE, "kwargs": kwargs},
                "comment": f"needs napari-cellclass (>= {__version__}) installed",
            },
            "torchscript": {"source": "weights_torchscript.pt", "pytorch_version": ts_version, "parent": "pytorch_state_dict"},
        },
        "config": {"napari_cellclass": {
            "model": _plain(bundle.metadata()), "value_range": value_range, "baked_normalization": baked,
            "exported_by": f"napari-cellclass {__version__}",
        }},
    }


def _describe(spec: Any, rdf: dict[str, Any], folder: Path) -> Any:
    with spec.ValidationContext(root=folder, perform_io_checks=True):
        descr = spec.build_description(rdf)
    if isinstance(descr, spec.InvalidDescr):
        errors = [f"{'.'.join(str(p) for p in e.loc)}: {e.msg}" for e in descr.validation_summary.details[-1].errors][:3]
        raise CellclassError("bioimageio.spec rejects the package: " + "; ".join(errors),
                             "check --license (an SPDX id such as CC-BY-4.0), --author and --cite")
    return descr


def _save_zip(spec: Any, descr: Any, out: Path) -> Path:
    from ..atomicfile import fsync_folder, publish_mode

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".zip", dir=out.parent)
    os.close(fd)
    try:
        spec.save_bioimageio_package(descr, output_path=Path(tmp))
        publish_mode(tmp, out)
        os.replace(tmp, out)
        fsync_folder(out.parent)
    except OSError as err:
        raise CellclassError(f"cannot write {out} ({err.strerror or err})", "choose a writable folder with free space") from err
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out


def export_bioimageio(
    bundle: ModelBundle,
    out_zip: str | os.PathLike,
    *,
    authors: Sequence[str] = ("napari-cellclass user",),
    license: str = "CC-BY-4.0",
    cite: Sequence[dict[str, str]] | None = None,
    name: str | None = None,
    sample: tuple[np.ndarray, float | None, str] | None = None,
    explainer: Explainer | None = None,
    value_range: float = 255.0,
) -> Path:
    """Write ``bundle`` as a bioimage.io model package (spec 0.5) to ``out_zip``; return its path.

    ``sample``: (float32 (C, H, W) image, its pixel type's range, where it came from)
    for the test tensors and cover; default :func:`bioimageio_docs.choose_sample`.
    ``explainer(bundle, crop, value_max)`` gives the cover's (H, W) map in [0, 1]
    (``core.explain.cover.gradcam_map``; the models layer cannot import explain).
    """
    spec = require_spec()  # first: the optional extra may be missing
    from PIL import Image

    from .bioimageio_docs import choose_sample, cover_image, documentation
    from .bioimageio_ops import compile_ops, export_preprocessing

    if bundle.is_fcn:
        raise CellclassError("FCN heat-map models are not exported yet", "export a classifier with a pooled head")
    if bundle.arch.family == "bioimageio":  # a foreign package: its network is not one this program describes
        raise CellclassError("this model is a bioimage.io package from elsewhere; only napari-cellclass models are exported",
                             f"share the package it was loaded from ({bundle.provenance.get('loaded_from', 'its zip')})")
    out = Path(out_zip)
    if out.suffix.lower() != ".zip":
        out = out.with_name(out.name + ".zip")
    chw, value_max, where = sample or choose_sample(bundle)
    spec_ops, baked = export_preprocessing(bundle.preprocess.normalization, bundle.in_chans, value_range)
    x_raw, crop = test_input(bundle, chw, value_max, value_range)
    x_pre = torch.from_numpy(x_raw)
    for op in compile_ops(spec_ops, ("batch", "channel", "y", "x")):
        x_pre = op(x_pre)
    net, kwargs = package_network(bundle, baked)
    with tempfile.TemporaryDirectory(prefix="cellclass-bioimageio-") as tmp:
        folder = Path(tmp)
        y = _write_weights(net, x_pre, folder)
        _self_check(bundle, crop, value_max, y)
        np.save(folder / "test_input.npy", x_raw)
        np.save(folder / "test_output.npy", y.astype(np.float32))
        heat = explainer(bundle, crop, value_max) if explainer is not None else None
        Image.fromarray(cover_image(crop, heat)).save(folder / "cover.png")
        note = ("Cover: the test crop, and the same crop under the Grad-CAM map of the predicted class."
                if heat is not None else "Cover: the test crop (no Grad-CAM map was computed for it).")
        (folder / "README.md").write_text(documentation(bundle, sample=where, spec_ops=spec_ops, baked=baked is not None,
                                                        value_range=value_range, cover_note=note))
        rdf = build_rdf(bundle, kwargs, spec_ops, authors=authors, license=license, cite=cite or DEFAULT_CITE,
                        name=name, value_range=value_range, baked=baked is not None)
        descr = _describe(spec, rdf, folder)
        return _save_zip(spec, descr, out)
