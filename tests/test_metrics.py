"""core.metrics against values worked out by hand on tiny arrays."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_cellclass.core.errors import DataError
from napari_cellclass.core.evaluation.metrics import (choose_thresholds, classification_metrics, learning_curve, mean_sd, multilabel_metrics, nested_fractions)


def _onehotish(pred, k, conf=0.7):
    p = np.full((len(pred), k), (1 - conf) / (k - 1))
    p[np.arange(len(pred)), pred] = conf
    return p


def test_single_label_by_hand():
    y = [0, 0, 1, 1, 2, 2]
    probs = _onehotish([0, 1, 1, 1, 2, 0], 3)
    m = classification_metrics(y, probs, ["a", "b", "c"])
    assert m["n_images"] == 6 and m["accuracy"] == pytest.approx(4 / 6)
    pc = m["per_class"]
    assert pc["a"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert pc["b"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert pc["c"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["confidence"]["right"]["n"] == 4 and m["confidence"]["wrong"]["n"] == 2
    assert m["confidence"]["right_mean"] == pytest.approx(0.7)
    json.dumps(m)  # JSON-ready


def test_auc_binary_and_undefined():
    y = [0, 0, 1, 1]
    p1 = np.array([0.1, 0.4, 0.35, 0.8])
    m = classification_metrics(y, np.stack([1 - p1, p1], 1), ["neg", "pos"])
    # positives (0.35, 0.8) beat negatives (0.1, 0.4) in 3 of 4 pairs
    assert m["auc_macro"] == pytest.approx(0.75)
    assert m["auc_per_class"] == pytest.approx({"neg": 0.75, "pos": 0.75})
    m3 = classification_metrics(y, _onehotish([0, 1, 1, 1], 3), ["a", "b", "c"])
    assert m3["auc_macro"] is None and "c" in m3["auc_note"] and m3["auc_per_class"]["c"] is None
    assert m3["per_class"]["c"]["support"] == 0


def test_bad_shapes_are_data_errors():
    with pytest.raises(DataError, match="do not fit"):
        classification_metrics([0, 1], np.zeros((2, 3)), ["a", "b"])
    with pytest.raises(DataError, match="rows"):
        classification_metrics([0, 1, 1], np.zeros((2, 2)), ["a", "b"])


def test_multilabel_by_hand():
    y = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    probs = np.array([[0.9, 0.2], [0.6, 0.3], [0.4, 0.7], [0.1, 0.6]])
    m = multilabel_metrics(y, probs, ["x", "y"], [0.5, 0.5])
    # predictions [[1,0],[1,0],[0,1],[0,1]]: x perfect; y TP 1, FP 1, FN 1 → Dice 0.5
    assert m["per_class_dice"] == pytest.approx({"x": 1.0, "y": 0.5})
    assert m["mean_dice"] == pytest.approx(0.75)
    assert m["exact_match"] == pytest.approx(0.5)
    by_n = m["correct_rate_by_n_labels"]
    assert by_n["1"]["n_images"] == 2 and by_n["1"]["exact_match"] == 1.0
    assert by_n["2"]["exact_match"] == 0.0 and by_n["2"]["labels_found"] == 0.5
    assert by_n["0"]["exact_match"] == 0.0 and by_n["0"]["labels_found"] is None
    # image 1 misses 'y' with no false positive predicted → the 'nothing' column
    assert m["confusion_matrix"] == [[2, 0, 0], [0, 1, 1]] and m["confusion_columns"] == ["x", "y", "nothing"]
    assert m["accuracy"] == m["exact_match"] and m["macro_f1"] == m["mean_dice"]
    assert m["per_class"]["y"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    # AUC of y: positives (0.3, 0.7) vs negatives (0.2, 0.6) win 3 of 4 pairs; x separates perfectly
    assert m["auc_per_class"] == pytest.approx({"x": 1.0, "y": 0.75}) and m["auc_macro"] == pytest.approx(0.875)
    assert m["per_class_correct_rate"] == pytest.approx({"x": 1.0, "y": 0.5})
    # lists of label indices work as well as a multi-hot array
    m2 = multilabel_metrics([[0], [0, 1], [1], []], probs, ["x", "y"], [0.5, 0.5])
    assert m2["mean_dice"] == m["mean_dice"]
    json.dumps(m)


def test_dice_undefined_class_is_left_out_of_the_mean():
    y = np.array([[1, 0], [0, 0]])
    m = multilabel_metrics(y, np.array([[0.9, 0.1], [0.2, 0.2]]), ["x", "y"])
    assert m["per_class_dice"] == {"x": 1.0, "y": None} and m["mean_dice"] == 1.0


def test_choose_thresholds_by_hand():
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]])
    probs = np.array([[0.9, 0.2, 0.1], [0.6, 0.3, 0.2], [0.4, 0.7, 0.3], [0.1, 0.6, 0.35]])
    th = choose_thresholds(y, probs)
    # class 0: every t in 0.41..0.60 separates perfectly → the one closest to 0.5
    # class 1: best Dice 0.8 for t in 0.21..0.30 (TP 2, FP 1) → 0.30
    # class 2: no positives → Dice 1 when nothing is predicted, t in 0.36..0.99 → 0.50
    assert th == pytest.approx([0.50, 0.30, 0.50])
    # class 0 alone, scores 0.55 / 0.9 vs 0.1 / 0.2: best run 0.21..0.55 → 0.50; shifted up → 0.6 run 0.61..0.9
    assert choose_thresholds([[0], [0], [], []], np.array([[0.55], [0.9], [0.1], [0.2]])) == [0.5]
    assert choose_thresholds([[0], [0], [], []], np.array([[0.95], [0.9], [0.1], [0.6]])) == [0.61]
    assert multilabel_metrics(y, probs, ["a", "b", "c"], th)["per_class_dice"]["b"] == pytest.approx(0.8)
    with pytest.raises(DataError):
        choose_thresholds(y, probs, step=0)


def test_learning_curve_nested_and_stratified():
    labels = [[0]] * 10 + [[1]] * 5
    subsets = nested_fractions(labels, (0.2, 0.6, 1.0), seed=3)
    assert [s.size for s in subsets] == [3, 9, 15]  # ceil per class: 2+1, 6+3, 10+5
    assert set(subsets[0]) <= set(subsets[1]) <= set(subsets[2])
    seen = []

    def train(idx):
        seen.append(idx)
        return len(idx)

    rows = learning_curve(train, lambda n: {"accuracy": n / 15, "name": "skipped"}, labels, (0.2, 1.0))
    assert [r["n_train"] for r in rows] == [3, 15] and rows[1]["accuracy"] == 1.0 and "name" not in rows[0]
    assert rows[0]["fraction"] == 0.2 and len(seen) == 2


def test_mean_sd():
    assert mean_sd([0.9, 0.95, None]) == pytest.approx({"mean": 0.925, "sd": np.std([0.9, 0.95], ddof=1), "n": 2})
    assert mean_sd([None]) == {"mean": None, "sd": None, "n": 0}


def test_choose_thresholds_agrees_with_the_training_loop():
    """core.thresholds (used by core.train) and core.metrics pick the same thresholds."""
    from napari_cellclass.core.evaluation import thresholds

    rng = np.random.default_rng(1)
    y = (rng.random((40, 5)) < 0.3).astype(int)
    y[:, 4] = 0  # a class never present
    probs = np.clip(0.5 * y + 0.6 * rng.random((40, 5)), 0, 1)
    assert choose_thresholds(y, probs) == thresholds.choose_thresholds(y, probs)
