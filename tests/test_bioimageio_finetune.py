"""Fine-tuning a foreign bioimage.io package: its timm network becomes an ordinary model file.

The packages are built here (``test_bioimageio_foreign.timm_package``: a tiny timm model,
pretrained=False), fine-tuned for 1 epoch, saved as ``.safetensors``, loaded back and
exported again.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from test_bioimageio_foreign import CLASSES, timm_package

from napari_cellclass.core.errors import CellclassError
from napari_cellclass.core.models.heads import probabilities
from napari_cellclass.core.models.modelfile import load_model, read_header, save_model
from napari_cellclass.core.progress import drain
from napari_cellclass.core.training.finetune import (
    FineTuneOptions,
    finetune_steps,
    start_model,
)


def _items(n: int = 12, classes: int = 3) -> list[tuple]:
    rng = np.random.default_rng(3)
    return [((rng.random((2, 32, 32), dtype=np.float32) * 1000 + 300 * (i % classes)), [i % classes], f"s{i}")
            for i in range(n)]


def _probs(bundle, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return probabilities(bundle.network(torch.from_numpy(x)), bundle.output).numpy()


def _finetune(package, classes: list[str]):
    bundle = load_model(package)
    start = start_model("model", None, classes, 2, bundle=bundle)
    options = FineTuneOptions(epochs=1, batch_size=4, augment=False, feature_cache=False)
    return drain(finetune_steps(start, _items(classes=len(classes)), classes, options, device="cpu")).bundle


@pytest.mark.parametrize("classes", [CLASSES, ["a", "b"]], ids=["same classes", "new head"])
def test_finetuned_package_saves_loads_and_predicts_identically(tmp_path, classes):
    rdf = timm_package(tmp_path / "pkg")
    tuned = _finetune(rdf, classes)
    assert tuned.arch.family == "bioimageio_timm" and tuned.arch.name == "test_resnet"
    sha = hashlib.sha256(rdf.read_bytes()).hexdigest()
    assert tuned.provenance["fine_tuned_from"] == f"fine-tuned from bioimage.io package foreign timm (sha256 {sha})"
    path = save_model(tuned, tmp_path / "tuned.safetensors")
    meta = json.loads(read_header(path)["__metadata__"]["napari_cellclass"])
    assert meta["arch"]["family"] == "bioimageio_timm" and meta["arch"]["name"] == "test_resnet"
    assert json.loads(meta["arch"]["options"]["preprocessing"])[0]["id"] == "zero_mean_unit_variance"
    assert meta["classes"] == classes and meta["channel_names"] == ["dna", "actin"]
    assert "fine-tuned from bioimage.io package foreign timm" in meta["provenance"]["fine_tuned_from"]
    back = load_model(path)
    x = np.random.default_rng(5).random((4, 2, 32, 32), dtype=np.float32) * 1000
    assert np.abs(_probs(back, x) - _probs(tuned, x)).max() <= 1e-4
    assert back.classes == classes and back.provenance["fine_tuned_from"] == tuned.provenance["fine_tuned_from"]
    if classes == CLASSES:  # training changed the weights: the fine-tuned model is not the package it started from
        assert np.abs(_probs(back, x) - _probs(load_model(rdf), x)).max() > 1e-6


def test_package_saved_as_model_file_predicts_like_the_package(tmp_path):
    rdf = timm_package(tmp_path / "pkg", fmt="safetensors")
    package = load_model(rdf)
    back = load_model(save_model(package, tmp_path / "copy.safetensors"))
    x = np.random.default_rng(6).random((3, 2, 32, 32), dtype=np.float32) * 1000
    assert np.abs(_probs(back, x) - _probs(package, x)).max() <= 1e-4


def test_finetuned_package_exports_to_bioimageio_again(tmp_path):
    from napari_cellclass.cli import main

    tuned = _finetune(timm_package(tmp_path / "pkg"), ["a", "b"])
    model = save_model(tuned, tmp_path / "tuned.safetensors")
    import tifffile

    sample = tmp_path / "sample.tif"
    tifffile.imwrite(sample, (np.random.default_rng(9).random((2, 40, 40)) * 1000).astype(np.uint16))
    out = tmp_path / "tuned.zip"
    assert main(["export-bioimageio", str(model), str(out), "--sample", str(sample)]) == 0
    again = load_model(out)
    x = np.random.default_rng(7).random((2, 2, 32, 32), dtype=np.float32) * 1000
    assert again.classes == ["a", "b"]
    assert np.abs(_probs(again, x) - _probs(load_model(model), x)).max() <= 1e-4


def test_fit_from_a_package_path(tmp_path):
    from napari_cellclass.core.training.api import fit

    rdf = timm_package(tmp_path / "pkg")
    tuned = fit(str(rdf), _items(), classes=CLASSES, epochs=1, batch_size=4, val_fraction=0.25, test_fraction=0.0,
                device="cpu", channel_axis=0)
    assert tuned.arch.family == "bioimageio_timm"
    assert "fine-tuned from bioimage.io package foreign timm" in tuned.provenance["fine_tuned_from"]
    back = load_model(save_model(tuned, tmp_path / "fit.safetensors"))
    x = np.random.default_rng(8).random((2, 2, 32, 32), dtype=np.float32) * 1000
    assert np.abs(_probs(back, x) - _probs(tuned, x)).max() <= 1e-4


def test_torchscript_only_package_is_refused_before_training(tmp_path):
    arch = {"import_from": "somelib.models", "callable": "Net", "kwargs": {}}
    bundle = load_model(timm_package(tmp_path / "pkg", architecture=arch, torchscript=True))
    with pytest.raises(CellclassError, match="only TorchScript weights") as err:
        start_model("model", None, CLASSES, 2, bundle=bundle)
    assert "pytorch_state_dict weights of a timm architecture" in err.value.fix
    with pytest.raises(CellclassError, match="cannot be fine-tuned or saved"):
        save_model(bundle, tmp_path / "ts.safetensors")
    assert not (tmp_path / "ts.safetensors").exists()


def _tree(root, classes: list[str]):
    import tifffile

    for image, labels, name in _items(classes=len(classes)):
        (root / classes[labels[0]]).mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(root / classes[labels[0]] / f"{name}.tif", image.astype(np.uint16))
    return root


def test_cli_train_resume_from_a_package(tmp_path, capsys):
    from napari_cellclass.cli import main

    rdf = timm_package(tmp_path / "pkg")
    data = _tree(tmp_path / "data", CLASSES)
    out = tmp_path / "tuned.safetensors"
    args = ["train", str(data), "--resume", str(rdf), "--out", str(out), "--epochs", "1", "--batch-size", "4",
            "--device", "cpu", "--channel-axis", "0", "--no-progress"]
    assert main(args) == 0
    back = load_model(out)
    assert back.arch.family == "bioimageio_timm" and back.classes == CLASSES
    assert "fine-tuned from bioimage.io package foreign timm" in back.provenance["fine_tuned_from"]
    arch = {"import_from": "somelib.models", "callable": "Net", "kwargs": {}}
    ts = timm_package(tmp_path / "ts", architecture=arch, torchscript=True)
    capsys.readouterr()
    assert main([*args[:3], str(ts), "--out", str(tmp_path / "ts.safetensors"), *args[6:]]) == 2
    err = capsys.readouterr().err
    assert "only TorchScript weights" in err and "pytorch_state_dict weights of a timm architecture" in err
    assert not (tmp_path / "ts.safetensors").exists()
