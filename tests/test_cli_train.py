"""`cellclass synth` → `cellclass train` → the saved model loads and predicts."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from napari_cellclass.cli import main
from napari_cellclass.core.models.modelfile import load_model
from napari_cellclass.core.inference.predict import predict


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


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
def test_ctrl_c_saves_the_best_model_and_exits_130(tmp_path):
    import os
    import signal
    import subprocess

    data, out = tmp_path / "bf", tmp_path / "m.safetensors"
    assert main(["synth", "brightfield", str(data), "--n", "8", "--size", "32", "32", "--no-progress"]) == 0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                                         os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "napari_cellclass.cli", "train", str(data), "--arch", "senescence_cnn",
                             "--input-size", "32", "--epochs", "100000", "--device", "cpu", "--no-progress",
                             "--out", str(out)], stderr=subprocess.PIPE, text=True, env=env)
    watchdog = threading.Timer(300, proc.kill)  # a failure must not hang the suite
    watchdog.start()
    lines = []
    for line in proc.stderr:  # wait for a finished epoch, so there is a best model to keep
        lines.append(line)
        if line.startswith("epoch 1/"):
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.communicate(timeout=300)[1]
    watchdog.cancel()
    assert proc.returncode == 130, "".join(lines) + rest
    assert "saved the best model so far" in rest
    b = load_model(out)
    assert b.provenance["training"]["cancelled"] is True and b.provenance["training"]["epochs_run"] >= 1


def test_train_an_fcn_on_an_exported_folder_with_painted_masks(tmp_path, capsys):
    """Viewer annotations → export → `cellclass train`: the painted masks are the FCN's targets."""
    from napari_cellclass.core.annotations import AnnotationStore, export_dataset

    rng = np.random.default_rng(5)
    store = AnnotationStore.open(tmp_path / "ann.json", multilabel=True)
    for c in ("nucleus", "ER"):
        store.add_class(c)
    for i in range(3):  # painted: nucleus top-left, ER bottom-right
        m = np.zeros((64, 64), np.uint8)
        m[:20, :20] = 1
        m[40:, 40:] = 2
        store.set_pixel_labels(store.add_image(rng.integers(0, 255, (4, 64, 64)).astype(np.uint8), name=f"painted{i}"), 0, m)
    store.label_image(store.add_image(rng.integers(0, 255, (4, 64, 64)).astype(np.uint8), name="plain"), 0, ["ER"])
    data, out = tmp_path / "export", tmp_path / "m.safetensors"
    export_dataset(store, data)
    assert len(list((data / "masks").iterdir())) == 3
    rc = main(["train", str(data), "--preset", "protein-localization-fcn", "--epochs", "1", "--input-size", "64",
               "--test-fraction", "0", "--val-fraction", "0", "--batch-size", "4", "--device", "cpu", "--no-progress",
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err
    b = load_model(out)
    assert b.is_fcn and b.classes == ["nucleus", "ER"] and b.in_chans == 4 and b.multilabel
    data_rec = b.provenance["training"]["data"]
    assert data_rec["n_train"] == 4 and data_rec["painted_targets"] == 3
    assert predict(b, [rng.integers(0, 255, (4, 64, 64)).astype(np.uint8)], channel_axis=0).shape == (1, 2)


def test_normalization_flag_reaches_the_build_options():
    from napari_cellclass.cli import build_parser
    from napari_cellclass.cli._trainopts import train_request

    args = build_parser().parse_args(["train", "data", "--arch", "resnet18", "--normalization", "dataset", "--out", "m"])
    build, _ = train_request(args)
    assert build.normalization == "dataset"
    default, _ = train_request(build_parser().parse_args(["train", "data", "--arch", "resnet18", "--out", "m"]))
    assert default.normalization is None  # the architecture's default: per-image standardisation
    from napari_cellclass.core.training.intensity import CHOICES

    # the CLI spells the choices out (no torch import at start-up); they must stay the engine's
    train = next(a for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions
                 if a.dest == "normalization")
    assert tuple(train.choices) == CHOICES
