"""Study 4's hybrid: PCA + SVM heads computed in torch equal scikit-learn, files hold no pickle."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cellclass.core.training.hybrid import fit_svm, svm_head_from_sklearn
from test_train import _run  # drains a training generator: (events, result)


@pytest.mark.parametrize("k,kernel", [(2, "poly"), (3, "poly"), (4, "rbf")])
def test_svm_head_equals_sklearn_decision_function(k, kernel):
    rng = np.random.default_rng(k)
    x = rng.normal(size=(48, 10))
    y = np.arange(48) % k
    x[:, 0] += 1.5 * y
    pipe, summary = fit_svm(x, y, kernel=kernel, seed=0)
    assert summary["cv_folds"] == 3 and sum(summary["n_support"]) > 0
    head = svm_head_from_sklearn(pipe, k, 1 if k == 2 else k)
    test = rng.normal(size=(15, 10))
    ref = pipe.decision_function(test)
    got = head.decision(torch.from_numpy(test)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9)
    logits = head(torch.from_numpy(test).float()).numpy()
    if k == 2:  # one logit, positive → the second class, as SVC.predict
        np.testing.assert_array_equal((logits[:, 0] > 0).astype(int), pipe.predict(test))
    else:
        np.testing.assert_array_equal(logits.argmax(1), np.argmax(ref, 1))


CLASSES = ["COLO-704", "EFO-21"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from napari_cellclass.core.synth import write_dataset

    return write_dataset("cell-line", tmp_path_factory.mktemp("data") / "cells", 12, seed=3, size=(32, 32), classes=CLASSES)


@pytest.fixture(scope="module")
def base():
    from napari_cellclass.core.presets.factory import build_model

    # two small timm backbones (random weights: tests never download) voting as one model
    return build_model(["resnet18", "resnet10t"], classes=CLASSES, input_size=(32, 32), output="binary")


@pytest.fixture(scope="module")
def hybrid(base, folder):
    from napari_cellclass.core.training.hybrid import fit_hybrid

    return fit_hybrid(base, folder, device="cpu", seed=0)


def test_fit_hybrid_matches_sklearn_on_the_training_features(base, hybrid, folder):
    from napari_cellclass.core.data import load_dataset
    from napari_cellclass.core.training.hybrid import FAMILY, extract_features, is_hybrid

    assert is_hybrid(hybrid) and not is_hybrid(base)
    assert hybrid.arch.family == "ensemble" and hybrid.arch.vote == "hard"
    assert [m.family for m in hybrid.arch.members] == [FAMILY, FAMILY]
    assert base.arch.vote == "soft"  # the input bundle is untouched
    ds = load_dataset(folder)
    y = np.asarray([lab[0] for lab in ds.labels])
    gen = extract_features(base, ds, device="cpu")
    while True:
        try:
            next(gen)
        except StopIteration as done:
            feats = done.value
            break
    for f, member in zip(feats, hybrid.network.members):
        pipe, _ = fit_svm(f, y, seed=0)  # the same deterministic fit fit_hybrid did
        np.testing.assert_allclose(member.head.decision(torch.from_numpy(f)).numpy(), pipe.decision_function(f),
                                   rtol=1e-7, atol=1e-7)
    assert hybrid.provenance["hybrid"]["n_train"] == 12


def test_hybrid_round_trip_without_pickle(hybrid, folder, tmp_path, monkeypatch):
    import pickle

    from napari_cellclass.core.errors import ModelFileError
    from napari_cellclass.core.training.hybrid import load_hybrid, predict_hybrid, save_hybrid
    from napari_cellclass.core.io.files import find_images

    files = find_images([folder])
    before = predict_hybrid(hybrid, files, device="cpu")
    path = save_hybrid(hybrid, tmp_path / "hybrid")
    assert path.suffix == ".safetensors"

    def refuse(*a, **k):
        raise AssertionError("a model file must never be unpickled")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    loaded = load_hybrid(path)
    after = predict_hybrid(loaded, files, device="cpu")
    np.testing.assert_array_equal(after["votes"], before["votes"])
    assert after["labels"] == before["labels"]
    assert set(np.unique(np.round(after["votes"], 5))) <= {0.0, 0.5, 1.0}  # two members, hard votes
    sd0, sd1 = hybrid.network.state_dict(), loaded.network.state_dict()
    for key in ("members.0.head.support_vectors", "members.1.head.dual_coef", "members.0.head.pca_components"):
        assert sd1[key].dtype == torch.float64 and torch.equal(sd0[key], sd1[key])
    from napari_cellclass.core.presets.factory import build_model
    from napari_cellclass.core.models.modelfile import save_model

    plain = save_model(build_model("scaffoldnet", classes=CLASSES, input_size=(32, 32)), tmp_path / "plain")
    with pytest.raises(ModelFileError, match="not a hybrid"):
        load_hybrid(plain)


def test_train_hybrid_hook_speaks_train_events(base, folder):
    from napari_cellclass.core.training.hybrid import is_hybrid, is_hybrid_preset, train_hybrid
    from napari_cellclass.core.presets.studies import PRESETS

    assert is_hybrid_preset("senescence-ensemble:hybrid-svm") and "senescence-ensemble:hybrid-svm" in PRESETS
    assert not is_hybrid_preset("senescence-ensemble")
    events, result = _run(train_hybrid(base, folder, device="cpu", val_fraction=0.25, grid={"C": (1.0,), "degree": (2,)}))
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and "epoch" in kinds
    assert is_hybrid(result.bundle) and not result.cancelled
    training = result.bundle.provenance["training"]
    assert training["data"]["n_train"] + training["data"]["n_val"] == 12 and training["data"]["n_val"] >= 2
    assert "val_accuracy" in training["metrics"] and training["time_s"] >= 0  # the train CLI prints time_s


HYBRID_PRESET = "senescence-ensemble:hybrid-svm"


@pytest.fixture
def small_hybrid_preset(monkeypatch):
    """The hybrid preset with its seven ImageNet backbones swapped for two small ones (fast, offline)."""
    from dataclasses import replace

    from napari_cellclass.core.models.spec import ArchSpec, ensemble_spec
    from napari_cellclass.core.presets.studies import PRESETS

    p = PRESETS[HYBRID_PRESET]
    head = p.arch.members[0].head
    small = ensemble_spec([ArchSpec("timm", "mobilenetv2_100", head), ArchSpec("timm", "resnet10t", head)], vote="hard")
    monkeypatch.setitem(PRESETS, HYBRID_PRESET, replace(p, arch=small))
    return HYBRID_PRESET


def test_train_cli_fits_the_hybrid_preset(folder, tmp_path, small_hybrid_preset, capsys):
    """`cellclass train --preset senescence-ensemble:hybrid-svm` fits SVMs instead of training."""
    from napari_cellclass.cli import main
    from napari_cellclass.core.training.hybrid import FAMILY, load_hybrid

    name = small_hybrid_preset
    out = tmp_path / "hybrid.safetensors"
    rc = main(["train", str(folder), "--preset", name, "--out", str(out), "--no-pretrained", "--input-size", "32",
               "--device", "cpu", "--no-progress", "--set", 'grid={"C": [1.0], "degree": [2]}'])
    assert rc == 0, capsys.readouterr().err
    bundle = load_hybrid(out)
    assert [m.family for m in bundle.arch.members] == [FAMILY, FAMILY]
    assert bundle.provenance["preset"] == name and bundle.provenance["training"]["epochs_run"] == 0
    from napari_cellclass.core.data import load_dataset
    from napari_cellclass.core.data.fingerprint import data_fingerprint

    assert bundle.provenance["training"]["data"]["fingerprint"] == data_fingerprint(load_dataset(folder))
    assert main(["evaluate", str(out), str(folder), "--device", "cpu"]) == 0


def test_train_hybrid_cancel_returns_a_loadable_model(base, folder, tmp_path):
    import threading

    from napari_cellclass.core.models.modelfile import load_model, save_model
    from napari_cellclass.core.training.hybrid import train_hybrid

    stop = threading.Event()
    stop.set()
    events, result = _run(train_hybrid(base, folder, device="cpu", stop=stop))
    kinds = [e.kind for e in events]
    assert result.cancelled and kinds[-1] == "cancelled"
    assert "training" not in base.provenance  # the caller's bundle is untouched
    load_model(save_model(result.bundle, tmp_path / "partial"))


def test_cross_validate_the_hybrid_preset(folder, small_hybrid_preset):
    from napari_cellclass.core.training.crossval import cross_validate

    res = cross_validate(small_hybrid_preset, folder, folds=2, device="cpu", pretrained=False, input_size=(32, 32),
                         val_fraction=0.0, grid={"C": (1.0,), "degree": (2,)})
    assert [f["training"]["kind"] for f in res["per_fold"]] == ["hybrid", "hybrid"]
    assert [f["n_test"] for f in res["per_fold"]] == [6, 6] and res["summary"]["accuracy"]["n"] == 2
