"""`cellclass evaluate / report / cv` end to end, including the errors that exit 2."""

from __future__ import annotations

import json

import pytest

from napari_cellclass.cli import main

CLASSES = ["COLO-704", "EFO-21", "EFO-27"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from napari_cellclass.core.synth import write_dataset

    return write_dataset("cell-line", tmp_path_factory.mktemp("data") / "cells", 12, seed=5, size=(32, 32), classes=CLASSES)


@pytest.fixture(scope="module")
def model_file(folder, tmp_path_factory):
    from napari_cellclass.core.models.modelfile import save_model
    from napari_cellclass.core.training.api import fit

    bundle = fit("scaffoldnet", folder, epochs=1, batch_size=4, input_size=(32, 32), val_fraction=0.25)
    return save_model(bundle, tmp_path_factory.mktemp("models") / "tiny.safetensors")


def test_evaluate_writes_json_and_prints_a_summary(model_file, folder, tmp_path, capsys):
    out = tmp_path / "sub" / "metrics.json"
    assert main(["evaluate", str(model_file), str(folder), "--json", str(out), "--device", "cpu", "--batch-size", "5"]) == 0
    m = json.loads(out.read_text())
    assert {"classes", "n_images", "accuracy", "macro_f1", "per_class", "confusion_matrix", "auc_macro"} <= set(m)
    assert m["n_images"] == 12 and m["model"]["source"] == str(model_file)
    text = capsys.readouterr().out
    assert "12 images, 3 classes: accuracy" in text and "EFO-27" in text and "confusion matrix" in text
    assert main(["evaluate", str(model_file), str(folder), "--json", "-", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == m["accuracy"]


def test_evaluate_errors_exit_2(model_file, folder, tmp_path, capsys):
    assert main(["evaluate", str(model_file), str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nomodel.safetensors"), str(folder)]) == 2
    assert "does not exist" in capsys.readouterr().err
    other = tmp_path / "other"
    from napari_cellclass.core.synth import write_dataset

    write_dataset("cell-line", other, 2, size=(32, 32), classes=["COLO-704", "UKF-NB-3"])
    assert main(["evaluate", str(model_file), str(other), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "UKF-NB-3" in err and "does not know" in err


def test_report_command(model_file, folder, tmp_path, capsys):
    out = tmp_path / "figs"
    assert main(["report", str(model_file), str(folder), "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out.split()
    assert {p.rsplit("/", 1)[-1] for p in printed} == {"confusion_matrix.png", "roc_curves.png", "confidence.png",
                                                      "reliability.png", "training_curves.png", "metrics.json"}
    assert all((out / n).stat().st_size > 10_000 for n in ("confusion_matrix.png", "roc_curves.png"))


def test_cv_command(folder, tmp_path, capsys):
    out = tmp_path / "cv.json"
    assert main(["cv", str(folder), "--folds", "2", "--arch", "scaffoldnet", "--epochs", "1", "--batch-size", "4",
                 "--input-size", "32", "--val-fraction", "0.25", "--device", "cpu", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert len(res["per_fold"]) == 2 and res["train_options"]["epochs"] == 1 and res["train_options"]["input_size"] == [32, 32]
    cap = capsys.readouterr()
    assert "accuracy:" in cap.out and "±" in cap.out and "fold 2/2" in cap.err
    assert main(["cv", str(folder), "--folds", "1", "--arch", "scaffoldnet"]) == 2
    assert main(["cv", str(tmp_path / "missing"), "--folds", "2", "--arch", "scaffoldnet"]) == 2
