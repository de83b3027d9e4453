"""core.evaluate on a tiny trained model over synthetic folder / manifest data sets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_cellclass.core.presets.factory import build_model
from napari_cellclass.core.errors import DataError
from napari_cellclass.core.evaluation.evaluate import evaluate, evaluation_data
from napari_cellclass.core.synth import write_dataset

CLASSES = ["COLO-704", "EFO-21", "EFO-27"]
KEYS = {"classes", "n_images", "accuracy", "macro_f1", "per_class", "confusion_matrix", "auc_macro"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_dataset("cell-line", tmp_path_factory.mktemp("data") / "cells", 12, seed=1, size=(32, 32), classes=CLASSES)


@pytest.fixture(scope="module")
def trained(folder):
    from napari_cellclass.core.training.api import fit

    return fit("scaffoldnet", folder, epochs=1, batch_size=4, input_size=(32, 32), val_fraction=0.25, seed=0)


def test_evaluate_schema_and_consistency_with_predict(trained, folder):
    from napari_cellclass.core.io.files import find_images
    from napari_cellclass.core.inference.predict import predict

    m = evaluate(trained, folder, device="cpu", batch_size=5)
    assert KEYS <= set(m) and "mean_dice" not in m
    assert m["classes"] == CLASSES and m["n_images"] == 12
    assert set(m["per_class"]) == set(CLASSES)
    assert all(set(v) == {"precision", "recall", "f1", "support"} for v in m["per_class"].values())
    assert [v["support"] for v in m["per_class"].values()] == [4, 4, 4]
    cm = np.asarray(m["confusion_matrix"])
    assert cm.shape == (3, 3) and cm.sum() == 12 and cm.sum(1).tolist() == [4, 4, 4]
    assert m["accuracy"] == pytest.approx(np.trace(cm) / 12)
    assert m["auc_macro"] is None or 0.0 <= m["auc_macro"] <= 1.0
    json.loads(json.dumps(m))
    # the probabilities are exactly what prediction gives for the same files
    ev = evaluation_data(trained, folder, device="cpu")
    files = sorted(find_images([folder]), key=lambda p: ev.names.index(str(p)))
    np.testing.assert_allclose(ev.probs, predict(trained, files, device="cpu"), atol=1e-6)


def test_class_mismatch_and_missing_data(trained, folder, tmp_path):
    other = build_model("scaffoldnet", classes=["COLO-704", "EFO-21"], input_size=(32, 32))
    with pytest.raises(DataError, match="EFO-27"):
        evaluate(other, folder, device="cpu")
    with pytest.raises(DataError, match="does not exist"):
        evaluate(trained, tmp_path / "nowhere", device="cpu")


def test_subset_of_the_model_classes_is_fine(folder):
    from napari_cellclass.core.data import load_dataset

    ds = load_dataset(folder)
    sub = ds.subset([i for i, lab in enumerate(ds.labels) if lab[0] != 1])  # no EFO-21 images
    model = build_model("scaffoldnet", classes=["EFO-27", "EFO-21", "COLO-704", "extra"], input_size=(32, 32))
    m = evaluate(model, sub, device="cpu")
    assert m["per_class"]["EFO-21"]["support"] == 0 and m["per_class"]["extra"]["support"] == 0
    assert m["per_class"]["COLO-704"]["support"] == 4 and m["auc_macro"] is None and "auc_note" in m


def test_multilabel_model(tmp_path):
    from napari_cellclass.core.synth import TASKS

    data = write_dataset("protein", tmp_path / "protein", 6, seed=2, size=(32, 32))
    classes = TASKS["protein"].classes
    model = build_model("scaffoldnet", classes=classes, in_chans=4, output="sigmoid", input_size=(32, 32))
    model.thresholds = [0.3] * len(classes)
    m = evaluate(model, data, device="cpu")
    assert KEYS | {"mean_dice", "exact_match", "thresholds"} <= set(m)
    assert m["thresholds"] == [0.3] * len(classes) and m["n_images"] == 6
    assert np.asarray(m["confusion_matrix"]).shape == (len(classes), len(classes) + 1)
    json.loads(json.dumps(m))
    single = build_model("scaffoldnet", classes=classes, in_chans=4, input_size=(32, 32))
    with pytest.raises(DataError, match="multi-label"):
        evaluate(single, data, device="cpu")
