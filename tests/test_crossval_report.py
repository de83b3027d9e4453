"""k-fold cross-validation (2 folds × 1 epoch) and the report's figures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_cellclass.core.synth import write_dataset

CLASSES = ["COLO-704", "EFO-21", "EFO-27"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_dataset("cell-line", tmp_path_factory.mktemp("data") / "cells", 12, seed=4, size=(32, 32), classes=CLASSES)


def test_cross_validate_two_folds(folder):
    from napari_cellclass.core.training.crossval import cross_validate_steps

    gen = cross_validate_steps("scaffoldnet", folder, folds=2, seed=0, device="cpu", epochs=1, batch_size=4,
                               input_size=(32, 32), val_fraction=0.25)
    fractions, finished = [], []
    while True:
        try:
            p = next(gen)
        except StopIteration as done:
            res = done.value
            break
        fractions.append(p.fraction)
        if p.fold_metrics is not None:
            finished.append(p.fold_metrics["macro_f1"])
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and len(finished) == 2
    assert res["folds"] == 2 and not res["cancelled"] and res["classes"] == CLASSES
    folds = res["per_fold"]
    assert [f["n_test"] for f in folds] == [6, 6] and all(f["n_train"] == 6 for f in folds)
    accs = [f["metrics"]["accuracy"] for f in folds]
    s = res["summary"]
    assert s["accuracy"]["mean"] == pytest.approx(np.mean(accs)) and s["accuracy"]["sd"] == pytest.approx(np.std(accs, ddof=1))
    assert s["macro_f1"]["n"] == 2 and set(s["per_class_f1"]) == set(CLASSES)
    for stat in ("precision", "recall"):
        c = CLASSES[0]
        vals = [f["metrics"]["per_class"][c][stat] for f in folds]
        assert s[f"per_class_{stat}"][c]["mean"] == pytest.approx(np.mean(vals))
    assert np.asarray(s["confusion_matrix_total"]).sum() == 12
    assert [f["macro_f1"] for f in (x["metrics"] for x in folds)] == finished
    json.loads(json.dumps(res))


def test_cross_validate_refuses_bad_folds(folder):
    from napari_cellclass.core.training.crossval import cross_validate
    from napari_cellclass.core.errors import DataError

    with pytest.raises(DataError, match="at least 2 folds"):
        cross_validate("scaffoldnet", folder, folds=1)
    with pytest.raises(DataError, match="folds"):
        cross_validate("scaffoldnet", folder, folds=50)


def _non_blank(path):
    from matplotlib.image import imread

    img = imread(path)[..., :3]
    assert img.shape[0] > 300 and img.shape[1] > 300
    dark = (img.mean(-1) < 0.9).mean()  # ink: axes, text, bars, curves
    assert dark > 0.01 and img.std() > 0.05, f"{path.name} looks blank"


def test_report_writes_figures(folder, tmp_path):
    from napari_cellclass.core.evaluation.report import write_report
    from napari_cellclass.core.training.api import fit

    model = fit("scaffoldnet", folder, epochs=2, batch_size=4, input_size=(32, 32), val_fraction=0.25)
    assert model.provenance["training"]["history"]
    files = write_report(model, folder, tmp_path / "report", device="cpu")
    names = [f.name for f in files]
    # reliability.png: the model has a validation split, so it was calibrated (core.training.trust)
    assert names == ["confusion_matrix.png", "roc_curves.png", "confidence.png", "reliability.png", "training_curves.png",
                     "metrics.json"]
    for f in files[:-1]:
        _non_blank(f)
    assert json.loads(files[-1].read_text())["n_images"] == 12
    assert not list((tmp_path / "report").glob(".*.tmp"))  # atomic writes leave no temporaries


def test_report_without_history_has_no_training_curves(folder, tmp_path):
    from napari_cellclass.core.presets.factory import build_model
    from napari_cellclass.core.evaluation.report import write_report

    model = build_model("scaffoldnet", classes=CLASSES, input_size=(32, 32))
    names = [f.name for f in write_report(model, folder, tmp_path / "r", device="cpu")]
    assert "training_curves.png" not in names and "roc_curves.png" in names


def test_learning_curve_run(folder, tmp_path):
    from napari_cellclass.core.training.crossval import learning_curve_run

    test = write_dataset("cell-line", tmp_path / "test", 6, seed=9, size=(32, 32), classes=CLASSES)
    rows = learning_curve_run("scaffoldnet", folder, test, (0.5, 1.0), device="cpu", epochs=1, batch_size=4,
                              input_size=(32, 32), val_fraction=0.25)
    assert [r["fraction"] for r in rows] == [0.5, 1.0] and [r["n_train"] for r in rows] == [6, 12]
    assert all(r["n_images"] == 6 and 0.0 <= r["accuracy"] <= 1.0 for r in rows)
