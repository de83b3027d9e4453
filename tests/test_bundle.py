"""Model files: bit-identical round trip, atomic writes, and every kind of tampering."""

from __future__ import annotations

import json
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from napari_cellclass import build_model, load_model, predict, save_model
from napari_cellclass.core.models.modelfile import META_KEY
from napari_cellclass.core.errors import ModelFileError


def _images(n=4, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (40, 50, 3)).astype(np.uint8) for _ in range(n)]


@pytest.mark.parametrize("arch", ["resnet18", "protein-localization-fcn", "senescence-ensemble:scratch-cnn"])
def test_round_trip_is_bit_identical(arch, tmp_path):
    kw = {"classes": ["a", "b", "c"]} if arch == "resnet18" else {}
    bundle = build_model(arch, input_size=(32, 32), **kw)
    bundle.thresholds = None if not bundle.multilabel else [0.3] * bundle.num_classes
    bundle.provenance["metrics"] = {"macro_f1": 0.5}
    rng = np.random.default_rng(0)
    imgs = [rng.random((bundle.in_chans, 40, 36)).astype(np.float32) for _ in range(3)]
    before = predict(bundle, imgs)
    path = save_model(bundle, tmp_path / "m.safetensors")
    loaded = load_model(path)
    after = predict(loaded, imgs)
    assert np.array_equal(before, after)
    assert loaded.classes == bundle.classes and loaded.output == bundle.output
    assert loaded.preprocess == bundle.preprocess and loaded.arch == bundle.arch
    assert loaded.thresholds == bundle.thresholds and loaded.provenance["metrics"] == {"macro_f1": 0.5}
    assert loaded.channel_names == bundle.channel_names


def test_save_adds_suffix_and_is_atomic(tiny_bundle, tmp_path, monkeypatch):
    path = save_model(tiny_bundle, tmp_path / "model")
    assert path.name == "model.safetensors"
    good = path.read_bytes()

    import safetensors.torch

    def broken(*args, **kwargs):
        with open(args[1], "wb") as fh:
            fh.write(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_model", broken)
    with pytest.raises(ModelFileError, match="No space left on device.*previous file"):
        save_model(tiny_bundle, path)
    assert path.read_bytes() == good  # the previous model survives
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temp file left behind


def test_unwritable_folder(tiny_bundle, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(ModelFileError, match="cannot write the model"):
        save_model(tiny_bundle, blocker / "m.safetensors")


def test_read_only_folder_keeps_the_previous_file(tiny_bundle, tmp_path, monkeypatch):
    path = save_model(tiny_bundle, tmp_path / "m.safetensors")
    good = path.read_bytes()
    import tempfile

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)  # what a read-only folder does, even for root
    with pytest.raises(ModelFileError, match="Permission denied"):
        save_model(tiny_bundle, path)
    assert path.read_bytes() == good


def _rewrite(path, meta=None, tensors=None):
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    header = json.loads(_header(path)["__metadata__"][META_KEY])
    if meta is not None:
        meta(header)
    if tensors is not None:
        tensors(state)
    save_file(state, str(path), metadata={META_KEY: json.dumps(header)})


def _header(path):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n])


def test_truncated_file(tiny_model_file):
    data = tiny_model_file.read_bytes()
    tiny_model_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated"):
        load_model(tiny_model_file)
    tiny_model_file.write_bytes(data[:5])
    with pytest.raises(ModelFileError, match="too short"):
        load_model(tiny_model_file)
    tiny_model_file.write_bytes(b"")
    with pytest.raises(ModelFileError, match="too short"):
        load_model(tiny_model_file)


def test_pickles_are_never_opened(tiny_bundle, tmp_path):
    zip_ckpt = tmp_path / "zip.safetensors"
    torch.save(tiny_bundle.network.state_dict(), zip_ckpt)
    legacy = tmp_path / "legacy.safetensors"

    class Boom:  # would run code if it were unpickled
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    legacy.write_bytes(pickle.dumps(Boom(), protocol=2))
    for f in (zip_ckpt, legacy):
        with pytest.raises(ModelFileError, match="pickle checkpoint.*not opened"):
            load_model(f)
    assert not (tmp_path / "pwned").exists()


def test_foreign_safetensors(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ModelFileError, match="not a napari-cellclass model"):
        load_model(tmp_path / "plain.safetensors")
    (tmp_path / "text.safetensors").write_text("hello, I am text")
    with pytest.raises(ModelFileError, match="not a valid safetensors"):
        load_model(tmp_path / "text.safetensors")


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda m: m.pop("classes"), "incomplete"),
        (lambda m: m.update(output="poisson"), "unknown output mode"),
        (lambda m: m["arch"].update(family="os.system"), "unknown architecture family"),
        (lambda m: m["arch"].update(name="no_such_timm_model"), "unknown architecture"),
        (lambda m: m.update(format="something-else"), "does not describe"),
        (lambda m: m.update(format_version=99), "newer napari-cellclass"),
        (lambda m: m.update(classes=["a", "b"]), "do not fit"),
        (lambda m: m["preprocess"].update(resize="warp"), "preprocessing recipe"),
    ],
)
def test_wrong_metadata(tiny_model_file, edit, match):
    _rewrite(tiny_model_file, meta=edit)
    with pytest.raises(ModelFileError, match=match):
        load_model(tiny_model_file)


def test_tensors_of_the_wrong_shape_or_name(tiny_model_file):
    data = tiny_model_file.read_bytes()
    _rewrite(tiny_model_file, tensors=lambda s: s.update({"head.fc.weight": torch.zeros(3, 7)}))
    with pytest.raises(ModelFileError, match="wrong shape.*head.fc.weight"):
        load_model(tiny_model_file)
    tiny_model_file.write_bytes(data)
    _rewrite(tiny_model_file, tensors=lambda s: s.pop("head.fc.bias"))
    with pytest.raises(ModelFileError, match="missing.*head.fc.bias"):
        load_model(tiny_model_file)
    tiny_model_file.write_bytes(data)
    _rewrite(tiny_model_file, tensors=lambda s: s.update({"evil.extra": torch.zeros(1)}))
    with pytest.raises(ModelFileError, match="unexpected.*evil.extra"):
        load_model(tiny_model_file)


def test_card_mentions_what_a_biologist_needs(tiny_bundle):
    tiny_bundle.provenance["description"] = "demo"
    card = tiny_bundle.card()
    for text in ("classes (3, single-label): a, b, c", "resnet18", "32x32", "normalisation: meanstd", "description: demo"):
        assert text in card


def test_saved_file_has_ordinary_permissions(tiny_bundle, tmp_path):
    from napari_cellclass.core.atomicfile import _UMASK

    path = save_model(tiny_bundle, tmp_path / "m.safetensors")
    assert path.stat().st_mode & 0o777 == 0o666 & ~_UMASK
    path.chmod(0o640)
    save_model(tiny_bundle, path)  # replacing keeps the file's own permissions
    assert path.stat().st_mode & 0o777 == 0o640


def test_card_keeps_the_metrics_of_a_long_training_run(tiny_bundle):
    history = [{"epoch": e, "loss": 0.5, "val_loss": 0.4, "val_accuracy": 0.75, "time_s": 1.0} for e in range(1, 41)]
    tiny_bundle.provenance["training"] = {
        "epochs_run": 40, "best_epoch": 31, "stopped_early": True, "device": "cpu", "time_s": 120.5, "seed": 0,
        "started_from": "preset demo", "recipe": {"optimizer": "adam", "lr": 0.001, "batch_size": 8,
                                                   "augment": {"hflip": True, "rot90": True, "zoom": 0.0}},
        "data": {"n_train": 90, "n_val": 10, "class_counts": [30, 30, 30], "source": "cells/"},
        "metrics": {"val_accuracy": 0.8125, "val_macro_f1": 0.79}, "history": history}
    card = tiny_bundle.card().splitlines()
    assert "training: 40 epoch(s), best epoch 31, stopped early, on cpu, 120.5 s, from preset demo, seed 0" in card
    assert "training recipe: optimizer adam, lr 0.001, batch_size 8; augmentation: hflip, rot90" in card
    assert "training data: 90 train / 10 val images, class counts [30, 30, 30], from cells/" in card
    assert "training metrics: val_accuracy 0.812, val_macro_f1 0.790" in card  # not cut off behind the history
