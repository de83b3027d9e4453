"""`cellclass synth` → `cellclass train` → the saved model loads and predicts."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cellclass.cli import main
from napari_cellclass.core.bundle import load_model
from napari_cellclass.core.predict import predict


def test_synth_train_predict(tmp_path, capsys):
    data, out = tmp_path / "bf", tmp_path / "m.safetensors"
    assert main(["synth", "brightfield", str(data), "--n", "12", "--seed", "2", "--size", "40", "40", "--no-progress"]) == 0
    assert sorted(p.name for p in data.iterdir()) == ["MCF7", "MDA-MB-468", "classes.txt"]
    rc = main(["train", str(data), "--preset", "scaffoldnet-brightfield", "--out", str(out), "--epochs", "2",
               "--batch-size", "4", "--input-size", "40", "--val-fraction", "0.25", "--seed", "1", "--device", "cpu",
               "--set", "optimizer=adamw", "--set", 'augment={"hflip": true, "rot90": true}'])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "epoch 2/2" in err and "saved" in err
    b = load_model(out)
    tr = b.provenance["training"]
    assert b.classes == ["MDA-MB-468", "MCF7"] and b.input_size == (40, 40) and b.output == "binary"
    assert tr["epochs_run"] == 2 and tr["recipe"]["optimizer"] == "adamw" and tr["recipe"]["augment"]["rot90"] is True
    probs = predict(b, sorted((data / "MCF7").glob("*.png"))[:2])
    assert probs.shape == (2, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)
    # continue training the saved model
    out2 = tmp_path / "m2.safetensors"
    assert main(["train", str(data), "--resume", str(out), "--out", str(out2), "--epochs", "1", "--device", "cpu",
                 "--no-progress"]) == 0
    assert load_model(out2).provenance["training"]["started_from"] == f"model file {out}"


@pytest.mark.parametrize("argv, message", [
    (["synth", "nope", "{tmp}/x", "--n", "2"], "unknown synthetic task"),
    (["synth", "brightfield", "{tmp}/x", "--n", "2", "--size", "8", "8"], "size must be"),
    (["train", "{tmp}/missing", "--arch", "senescence_cnn", "--out", "{tmp}/m"], "does not exist"),
    (["train", "{tmp}", "--arch", "senescence_cnn", "--out", "{tmp}/m", "--set", "bogus=1"], "unknown training option"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
