"""bioimage.io model packages (spec 0.5): export passes bioimageio.core's own test, and packages load back."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("bioimageio.spec")

from napari_cellclass.core.errors import CellclassError, ModelFileError
from napari_cellclass.core.models.bioimageio_export import export_bioimageio
from napari_cellclass.core.models.bioimageio_import import package_test_tensors
from napari_cellclass.core.models.modelfile import load_model


def _sample(rng: np.random.Generator) -> tuple[np.ndarray, float, str]:
    from skimage.data import immunohistochemistry

    img = np.moveaxis(immunohistochemistry(), -1, 0)[:, 100:228, 150:278].astype(np.float32)
    return img, 255.0, "skimage.data.immunohistochemistry"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from napari_cellclass import build_model
    from napari_cellclass.core.explain.cover import gradcam_map

    bundle = build_model("resnet18", classes=["mitotic cell", "interphase", "dead"], input_size=(32, 32))
    out = tmp_path_factory.mktemp("pkg") / "tiny.zip"
    path = export_bioimageio(bundle, out, authors=["A. Tester"], sample=_sample(None), explainer=gradcam_map)
    return bundle, path


def _predict(bundle, image: np.ndarray) -> np.ndarray:
    from napari_cellclass.core.inference.predict import predict

    return np.asarray(predict(bundle, image, channel_axis=0))


def test_exported_package_passes_bioimageio_core_test_model(exported):
    core = pytest.importorskip("bioimageio.core")
    _, path = exported
    summary = core.test_model(path)
    failed = [(d.name, [e.msg for e in d.errors][:1]) for d in summary.details if d.status == "failed"]
    assert summary.status == "passed", failed
    with zipfile.ZipFile(path) as z:
        rdf = yaml.safe_load(z.read("rdf.yaml"))
        assert {"cover.png", "README.md", "test_input.npy", "test_output.npy"} <= set(z.namelist())
        readme = z.read("README.md").decode()
    assert rdf["format_version"].startswith("0.5")
    assert rdf["outputs"][0]["axes"][1]["channel_names"] == ["mitotic cell", "interphase", "dead"]
    assert [a.get("id", a["type"]) for a in rdf["inputs"][0]["axes"]] == ["batch", "channel", "y", "x"]
    assert set(rdf["weights"]) == {"torchscript", "pytorch_state_dict"}
    assert "scale_linear" in [s["id"] for s in rdf["inputs"][0]["preprocessing"]]  # meanstd in spec terms
    assert "mitotic cell" in readme and "Grad-CAM" in readme


def test_round_trip_predicts_like_the_original(exported, rng):
    bundle, path = exported
    back = load_model(path)
    assert back.classes == bundle.classes and back.arch == bundle.arch
    img = (rng.random((3, 48, 40)) * 255).astype(np.uint8)
    diff = np.abs(_predict(back, img) - _predict(bundle, img)).max()
    assert diff <= 1e-4


def test_own_package_matches_its_test_output_and_explains(exported):
    from napari_cellclass.core.explain.engine import explain

    _, path = exported
    back = load_model(path)
    x, y = package_test_tensors(path)
    from napari_cellclass.core.models.heads import probabilities

    # the test input holds raw 8-bit values at the input size: the model's own preprocessing, range 255
    net_in, _ = back.preprocess.prepare_batch(torch.from_numpy(x), torch.tensor([255.0]))
    with torch.inference_mode():
        assert np.abs(probabilities(back.network(net_in), back.output).numpy() - y).max() <= 1e-4
    img = np.clip(np.round(x[0]), 0, 255).astype(np.uint8)
    assert explain(back, img, "gradcam", channel_axis=0).maps.shape[-2:] == (32, 32)


def _foreign_package(folder: Path, softmax: bool) -> Path:
    """A package of a network napari-cellclass never saw: TorchScript only, its own preprocessing."""
    from bioimageio.spec import (
        ValidationContext,
        build_description,
        save_bioimageio_package,
    )

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 3), *([torch.nn.Softmax(1)] if softmax else [])).eval()
    with torch.no_grad():  # scores well above the validator's absolute tolerance
        net[4].weight.mul_(50)
        net[4].bias.mul_(50)
    x = np.random.default_rng(1).random((1, 2, 24, 24), dtype=np.float32) * 1000
    pre = (torch.from_numpy(x) - torch.from_numpy(x).mean((2, 3), keepdim=True)) / (torch.from_numpy(x).std((2, 3), keepdim=True, unbiased=False) + 1e-6)
    with torch.no_grad():
        y = net(pre).numpy()
        torch.jit.trace(net, pre).save(str(folder / "model.pt"))
    np.save(folder / "in.npy", x)
    np.save(folder / "out.npy", y)
    (folder / "doc.md").write_text("# foreign\n")
    rdf = {"type": "model", "format_version": "0.5.4", "name": "foreign", "description": "a foreign classifier",
           "authors": [{"name": "someone"}], "cite": [{"text": "x", "doi": "10.5281/zenodo.4414861"}], "license": "MIT",
           "documentation": "doc.md",
           "inputs": [{"id": "raw", "axes": [{"type": "batch"}, {"type": "channel", "channel_names": ["dna", "actin"]},
                                              {"type": "space", "id": "y", "size": 24}, {"type": "space", "id": "x", "size": 24}],
                       "test_tensor": {"source": "in.npy"}, "data": {"type": "float32"},
                       "preprocessing": [{"id": "zero_mean_unit_variance", "kwargs": {"axes": ["y", "x"]}}]}],
           "outputs": [{"id": "scores", "axes": [{"type": "batch"}, {"type": "channel", "channel_names": ["g1", "s", "g2m"]}],
                        "test_tensor": {"source": "out.npy"}, "data": {"type": "float32"}}],
           "weights": {"torchscript": {"source": "model.pt", "pytorch_version": torch.__version__.split("+")[0]}}}
    with ValidationContext(root=folder, perform_io_checks=True):
        descr = build_description(rdf)
    return save_bioimageio_package(descr, output_path=folder / "foreign.zip")


@pytest.mark.parametrize("softmax", [True, False])
def test_foreign_torchscript_package_matches_its_test_output(tmp_path, softmax):
    from napari_cellclass.core.explain.engine import explain
    from napari_cellclass.core.models.heads import probabilities

    path = _foreign_package(tmp_path, softmax)
    bundle = load_model(path)
    assert bundle.classes == ["g1", "s", "g2m"] and bundle.channel_names == ["dna", "actin"]
    x, y = package_test_tensors(path)
    want = y if softmax else torch.from_numpy(y).softmax(-1).numpy()
    with torch.inference_mode():
        got = probabilities(bundle.network(torch.from_numpy(x)), bundle.output).numpy()
    assert np.abs(got - want).max() <= 1e-4
    assert np.abs(_predict(bundle, x[0]) - want[0]).max() <= 1e-4  # the whole pipeline, at the input size
    with pytest.raises(CellclassError, match="only TorchScript weights"):
        explain(bundle, x[0], "gradcam", channel_axis=0)


# ------------------------------------------------------------------------- bad input
def _rewrite(src: Path, dst: Path, change) -> Path:
    with zipfile.ZipFile(src) as z:
        files = {n: z.read(n) for n in z.namelist()}
    change(files)
    with zipfile.ZipFile(dst, "w") as z:
        for n, data in files.items():
            z.writestr(n, data)
    return dst


def _edit_rdf(edit):
    def change(files):
        rdf = yaml.safe_load(files["rdf.yaml"])
        edit(rdf)
        files["rdf.yaml"] = yaml.safe_dump(rdf).encode()
    return change


def test_a_zip_that_is_no_package(tmp_path):
    p = tmp_path / "photos.zip"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("a.txt", "hello")
    with pytest.raises(ModelFileError, match="not a bioimage.io package"):
        load_model(p)


def test_an_rdf_of_another_type(exported, tmp_path):
    p = _rewrite(exported[1], tmp_path / "ds.zip", _edit_rdf(lambda r: r.update(type="dataset")))
    with pytest.raises(ModelFileError, match="describes a bioimage.io dataset, not a model"):
        load_model(p)


def test_an_unsupported_spec_version(exported, tmp_path):
    p = _rewrite(exported[1], tmp_path / "old.zip", _edit_rdf(lambda r: r.update(format_version="0.4.10")))
    with pytest.raises(ModelFileError, match="spec version 0.4.10 is not supported"):
        load_model(p)


def test_missing_weights(exported, tmp_path):
    p = _rewrite(exported[1], tmp_path / "nowts.zip", lambda f: f.pop("weights.pt"))
    with pytest.raises(ModelFileError, match="'weights.pt'.*missing"):
        load_model(p)


def test_tampered_weights(exported, tmp_path):
    def tamper(files):
        state = torch.load(io.BytesIO(files["weights.pt"]), weights_only=True)
        key = next(k for k, v in state.items() if v.is_floating_point())
        state[key] = state[key] + 1.0
        buf = io.BytesIO()
        torch.save(state, buf)
        files["weights.pt"] = buf.getvalue()
        assert hashlib.sha256(files["weights.pt"]).hexdigest()  # the rdf still names the old hash
    p = _rewrite(exported[1], tmp_path / "tampered.zip", tamper)
    with pytest.raises(ModelFileError, match="does not match the sha256"):
        load_model(p)


def test_cli_export_and_predict(exported, tmp_path, capsys):
    from napari_cellclass.cli import main

    img = tmp_path / "cells.png"
    from PIL import Image

    Image.fromarray(np.moveaxis(_sample(None)[0].astype(np.uint8), 0, -1)).save(img)
    assert main(["predict", str(exported[1]), str(img)]) == 0
    out = capsys.readouterr().out
    assert "mitotic cell" in out.splitlines()[0]
    assert main(["export-bioimageio", str(tmp_path / "none.safetensors"), str(tmp_path / "x.zip")]) == 2


def test_missing_extra_names_the_install(monkeypatch, tiny_bundle, tmp_path):
    from napari_cellclass.core.models import bioimageio_export

    # as if the optional extra were not installed
    monkeypatch.setattr(bioimageio_export, "SPEC_MODULE", "bioimageio_spec_not_installed")
    with pytest.raises(CellclassError, match=r"pip install \"napari-cellclass\[bioimageio\]\""):
        export_bioimageio(tiny_bundle, tmp_path / "x.zip")


def test_percentile_model_bakes_its_normalisation_and_passes(tmp_path):
    """Per-image order-statistic percentiles are not the spec's scale_range: they travel inside the network."""
    core = pytest.importorskip("bioimageio.core")
    from napari_cellclass import build_model
    from napari_cellclass.core.io.preprocess import Normalization, Preprocess

    pre = Preprocess(input_size=(32, 32), normalization=Normalization(method="percentile"))
    bundle = build_model("resnet18", classes=["a", "b"], preprocess=pre)
    path = export_bioimageio(bundle, tmp_path / "pct.zip", sample=_sample(None))
    with zipfile.ZipFile(path) as z:
        rdf = yaml.safe_load(z.read("rdf.yaml"))
    assert [s["id"] for s in rdf["inputs"][0]["preprocessing"]] == ["ensure_dtype"]
    assert rdf["config"]["napari_cellclass"]["baked_normalization"] is True
    assert core.test_model(path).status == "passed"


def test_own_package_without_its_config_runs_as_a_foreign_state_dict(exported, tmp_path):
    """Our CellclassPackageNet is on the allow-list by itself: an rdf stripped of `config` still runs and explains."""
    from napari_cellclass.core.explain.engine import explain
    from napari_cellclass.core.explain.target_layers import default_layer
    from napari_cellclass.core.models.heads import probabilities

    bundle, src = exported
    p = _rewrite(src, tmp_path / "noconfig.zip", _edit_rdf(lambda r: r.pop("config")))
    back = load_model(p)
    assert back.provenance["bioimageio"]["weights"] == "pytorch_state_dict" and back.classes == bundle.classes
    assert default_layer(back.network) == "backbone.net." + bundle.network.cam_layer
    x, y = package_test_tensors(p)
    with torch.inference_mode():
        assert np.abs(probabilities(back.network(torch.from_numpy(x)), back.output).numpy() - y).max() <= 1e-4
    assert explain(back, x[0], "gradcam", channel_axis=0).maps.shape[-2:] == (32, 32)
