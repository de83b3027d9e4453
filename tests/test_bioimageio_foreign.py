"""Foreign bioimage.io packages with pytorch_state_dict weights: allow-listed architectures only.

The packages are built here (a tiny timm model, weights as a pickled state dict or
safetensors, the package's own preprocessing), never downloaded.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from napari_cellclass.core.errors import CellclassError, ModelFileError
from napari_cellclass.core.models.bioimageio_import import package_test_tensors
from napari_cellclass.core.models.modelfile import load_model

CLASSES = ["g1", "s", "g2m"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _timm_net() -> torch.nn.Module:
    import timm

    torch.manual_seed(0)
    net = timm.create_model("test_resnet", pretrained=False, num_classes=3, in_chans=2).eval()
    with torch.no_grad():  # scores well apart, so a wrong network cannot match by chance
        net.fc.weight.mul_(20)
    return net


def _test_tensors(net: torch.nn.Module, folder: Path) -> None:
    x = np.random.default_rng(1).random((1, 2, 32, 32), dtype=np.float32) * 1000
    t = torch.from_numpy(x)
    pre = (t - t.mean((2, 3), keepdim=True)) / (t.std((2, 3), keepdim=True, unbiased=False) + 1e-6)
    with torch.no_grad():
        y = net(pre).numpy()
    np.save(folder / "in.npy", x)
    np.save(folder / "out.npy", y)


def timm_package(folder: Path, *, fmt: str = "pt", architecture: dict | None = None,
                 torchscript: bool = False, state: dict | None = None) -> Path:
    """An unpacked package (folder with rdf.yaml) of a tiny timm classifier, as another tool would write it."""
    folder.mkdir(parents=True, exist_ok=True)
    net = _timm_net()
    _test_tensors(net, folder)
    weights = folder / f"weights.{'safetensors' if fmt == 'safetensors' else 'pt'}"
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    else:
        torch.save(state if state is not None else net.state_dict(), weights)
    (folder / "README.md").write_text("# a foreign timm classifier\n")
    version = torch.__version__.split("+")[0]
    arch = architecture or {"import_from": "timm", "callable": "create_model",
                            "kwargs": {"model_name": "test_resnet", "num_classes": 3, "in_chans": 2, "pretrained": False}}
    entries = {"pytorch_state_dict": {"source": weights.name, "sha256": _sha(weights), "architecture": arch,
                                      "pytorch_version": version}}
    if torchscript:
        with torch.no_grad():
            torch.jit.trace(net, torch.zeros(1, 2, 32, 32)).save(str(folder / "model_ts.pt"))
        entries["torchscript"] = {"source": "model_ts.pt", "sha256": _sha(folder / "model_ts.pt"),
                                  "pytorch_version": version, "parent": "pytorch_state_dict"}
    rdf = {"type": "model", "format_version": "0.5.4", "name": "foreign timm", "description": "a foreign classifier",
           "authors": [{"name": "someone"}], "cite": [{"text": "x", "doi": "10.5281/zenodo.4414861"}], "license": "MIT",
           "documentation": "README.md",
           "inputs": [{"id": "raw", "axes": [{"type": "batch"}, {"type": "channel", "channel_names": ["dna", "actin"]},
                                              {"type": "space", "id": "y", "size": 32}, {"type": "space", "id": "x", "size": 32}],
                       "test_tensor": {"source": "in.npy", "sha256": _sha(folder / "in.npy")}, "data": {"type": "float32"},
                       "preprocessing": [{"id": "zero_mean_unit_variance", "kwargs": {"axes": ["y", "x"]}}]}],
           "outputs": [{"id": "logits", "axes": [{"type": "batch"}, {"type": "channel", "channel_names": CLASSES}],
                        "test_tensor": {"source": "out.npy", "sha256": _sha(folder / "out.npy")}, "data": {"type": "float32"}}],
           "weights": entries}
    (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf, sort_keys=False))
    return folder / "rdf.yaml"


def _probabilities(bundle, x: np.ndarray) -> np.ndarray:
    from napari_cellclass.core.models.heads import probabilities

    with torch.inference_mode():
        return probabilities(bundle.network(torch.from_numpy(x)), bundle.output).numpy()


def _predict(bundle, image: np.ndarray) -> np.ndarray:
    from napari_cellclass.core.inference.predict import predict

    return np.asarray(predict(bundle, image, channel_axis=0))


def _assert_matches_test_output(path: Path) -> object:
    bundle = load_model(path)
    assert bundle.classes == CLASSES and bundle.channel_names == ["dna", "actin"]
    x, y = package_test_tensors(path)
    want = torch.from_numpy(y).softmax(-1).numpy()  # raw scores: the softmax of the package's test output
    assert np.abs(_probabilities(bundle, x) - want).max() <= 1e-4
    assert np.abs(_predict(bundle, x[0]) - want[0]).max() <= 1e-4  # the whole pipeline, at the input size
    return bundle


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_timm_state_dict_package_matches_its_test_output_and_explains(tmp_path, fmt):
    from napari_cellclass.core.explain.engine import explain
    from napari_cellclass.core.explain.target_layers import default_layer

    path = timm_package(tmp_path / "pkg", fmt=fmt)
    bundle = _assert_matches_test_output(path)
    assert bundle.provenance["bioimageio"]["weights"] == "pytorch_state_dict"
    assert default_layer(bundle.network) == "backbone.layer4"  # the map timm's head pools, as for our own models
    card = bundle.card()
    assert "timm.create_model (test_resnet)" in card and "zero_mean_unit_variance" in card and "backbone.layer4" in card
    x, _ = package_test_tensors(path)
    result = explain(bundle, x[0], "gradcam", channel_axis=0)
    assert result.maps.shape[-2:] == (32, 32) and np.isfinite(result.maps).all() and float(np.ptp(result.maps)) > 0


def test_timm_model_named_as_the_callable_in_a_zip_written_by_bioimageio_spec(tmp_path):
    spec = pytest.importorskip("bioimageio.spec")
    arch = {"import_from": "timm.models", "callable": "test_resnet", "kwargs": {"num_classes": 3, "in_chans": 2}}
    rdf = timm_package(tmp_path / "pkg", fmt="safetensors", architecture=arch)
    _assert_matches_test_output(rdf)
    with spec.ValidationContext(root=rdf.parent, perform_io_checks=True):
        descr = spec.build_description(yaml.safe_load(rdf.read_text()))
    assert not isinstance(descr, spec.InvalidDescr)  # safetensors weights are a valid spec-0.5 state dict source
    _assert_matches_test_output(spec.save_bioimageio_package(descr, output_path=tmp_path / "timm.zip"))


def test_timm_package_is_valid_for_bioimageio_itself(tmp_path):
    """The hand-written package is a real one: bioimageio.core builds the timm model and reproduces its test output."""
    core = pytest.importorskip("bioimageio.core")
    summary = core.test_model(timm_package(tmp_path / "pkg"))
    failed = [(d.name, [e.msg for e in d.errors][:1]) for d in summary.details if d.status == "failed"]
    assert summary.status == "passed", failed


def test_architecture_source_in_the_package_is_never_run(tmp_path):
    marker = tmp_path / "ran"
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "net.py").write_text(f"open({str(marker)!r}, 'w').write('x')\nimport torch\nNet = torch.nn.Linear\n")
    arch = {"source": "net.py", "sha256": _sha(pkg / "net.py"), "callable": "Net", "kwargs": {}}
    path = timm_package(pkg, architecture=arch)
    with pytest.raises(ModelFileError, match="Python source shipped in the package.*never runs code.*TorchScript"):
        load_model(path)
    assert not marker.exists()


def test_refused_architecture_falls_back_to_torchscript_weights(tmp_path):
    from napari_cellclass.core.explain.engine import explain

    arch = {"import_from": "torchvision.models", "callable": "resnet18", "kwargs": {"num_classes": 3}}
    path = timm_package(tmp_path / "pkg", architecture=arch, torchscript=True)
    bundle = _assert_matches_test_output(path)
    assert bundle.provenance["bioimageio"]["weights"] == "torchscript"
    assert "not explainable (TorchScript weights only)" in bundle.card()
    with pytest.raises(CellclassError, match="only TorchScript weights"):
        explain(bundle, package_test_tensors(path)[0][0], "gradcam", channel_axis=0)


@pytest.mark.parametrize("arch, match", [
    ({"import_from": "torchvision.models", "callable": "resnet18"}, "torchvision.models.resnet18 is not one napari-cellclass builds"),
    ({"import_from": "os", "callable": "system", "kwargs": {"command": "true"}}, "os.system is not one"),
    ({"import_from": "timm", "callable": "create_model", "kwargs": {"model_name": "no_such_net"}}, "'no_such_net', which is not a timm model"),
])
def test_architectures_off_the_allow_list_are_refused(tmp_path, arch, match):
    path = timm_package(tmp_path / "pkg", architecture=arch)
    with pytest.raises(ModelFileError, match=match) as err:
        load_model(path)
    assert "TorchScript" in str(err.value)  # the fix


def test_timm_kwargs_that_load_files_are_refused(tmp_path):
    arch = {"import_from": "timm", "callable": "create_model",
            "kwargs": {"model_name": "test_resnet", "num_classes": 3, "in_chans": 2, "checkpoint_path": "weights.pt"}}
    with pytest.raises(ModelFileError, match="asks for checkpoint_path"):
        load_model(timm_package(tmp_path / "pkg", architecture=arch))


class _Payload:
    """Unpickling this would create the marker file: the restricted loader must refuse it."""

    marker = ""

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickled_objects_in_state_dict_weights_are_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    payload = _Payload()
    payload.marker = str(marker)
    state = {**_timm_net().state_dict(), "extra": payload}
    path = timm_package(tmp_path / "pkg", state=state)  # the rdf names the true sha256: the hash check passes
    with pytest.raises(ModelFileError, match="cannot be read as plain tensors"):
        load_model(path)
    assert not marker.exists()
    # the file really holds such an object: an unrestricted load runs it
    torch.load(path.parent / "weights.pt", weights_only=False)
    assert marker.exists()


def test_tampered_state_dict_weights(tmp_path):
    path = timm_package(tmp_path / "pkg", fmt="safetensors")
    from safetensors.torch import load_file, save_file

    state = load_file(str(path.parent / "weights.safetensors"))
    state["fc.bias"] = state["fc.bias"] + 1
    save_file(state, str(path.parent / "weights.safetensors"))
    with pytest.raises(ModelFileError, match="does not match the sha256"):
        load_model(path)


def test_weights_that_do_not_fit_the_architecture(tmp_path):
    arch = {"import_from": "timm", "callable": "create_model",
            "kwargs": {"model_name": "test_resnet", "num_classes": 5, "in_chans": 2}}
    with pytest.raises(ModelFileError, match="do not fit the architecture"):
        load_model(timm_package(tmp_path / "pkg", architecture=arch))


def test_cli_predict_and_explain_on_an_rdf_yaml(tmp_path, capsys):
    import csv

    import tifffile

    from napari_cellclass.cli import main

    rdf = timm_package(tmp_path / "pkg")
    x, y = package_test_tensors(rdf)
    img = tmp_path / "cells.tif"
    tifffile.imwrite(img, x[0])  # (2, 32, 32) float32, channels first
    table = tmp_path / "p.csv"
    assert main(["predict", str(rdf), str(img), "--channel-axis", "0", "--csv", str(table), "--no-progress"]) == 0
    row = next(csv.DictReader(table.open()))
    want = torch.from_numpy(y[0]).softmax(-1).numpy()
    got = np.array([float(row[f"p_{c}"]) for c in CLASSES])
    assert np.abs(got - want).max() <= 1e-4 and row["predicted_class"] == CLASSES[int(want.argmax())]
    assert main(["explain", str(rdf), str(img), "--channel-axis", "0", "--out", str(tmp_path / "maps")]) == 0
    assert list((tmp_path / "maps").rglob("*.tif"))


def test_cli_explain_on_a_torchscript_only_package_says_why_not(tmp_path, capsys):
    import tifffile

    from napari_cellclass.cli import main

    arch = {"import_from": "torchvision.models", "callable": "resnet18", "kwargs": {"num_classes": 3}}
    rdf = timm_package(tmp_path / "pkg", architecture=arch, torchscript=True)
    img = tmp_path / "cells.tif"
    tifffile.imwrite(img, package_test_tensors(rdf)[0][0])
    assert main(["explain", str(rdf), str(img), "--channel-axis", "0", "--out", str(tmp_path / "maps")]) != 0
    err = capsys.readouterr().err
    assert "only TorchScript weights" in err and "cannot be hooked" in err


def test_a_file_outside_the_package_is_refused(tmp_path):
    rdf = timm_package(tmp_path / "pkg")
    (tmp_path / "elsewhere.pt").write_bytes((rdf.parent / "weights.pt").read_bytes())
    text = yaml.safe_load(rdf.read_text())
    text["weights"]["pytorch_state_dict"]["source"] = "../elsewhere.pt"
    rdf.write_text(yaml.safe_dump(text))
    with pytest.raises(ModelFileError, match="lies outside the package"):
        load_model(rdf)
