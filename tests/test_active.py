"""What to label next: uncertainty scores and rankings on hand-made probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cellclass.core.annotations.active import METHODS, rank, uncertainty
from napari_cellclass.core.errors import DataError

P = np.array([
    [0.98, 0.01, 0.01],  # 0 confident
    [0.40, 0.35, 0.25],  # 1 spread out
    [0.50, 0.50, 0.00],  # 2 a tie between two classes
    [0.70, 0.20, 0.10],  # 3 fairly sure
    [1 / 3, 1 / 3, 1 / 3],  # 4 knows nothing
])


def test_single_model_scores_by_hand():
    np.testing.assert_allclose(uncertainty(P, "least_confidence"), [0.02, 0.60, 0.50, 0.30, 2 / 3])
    np.testing.assert_allclose(uncertainty(P, "margin"), [0.03, 0.95, 1.0, 0.5, 1.0])
    ent = uncertainty(P, "entropy")
    assert ent[4] == pytest.approx(1.0) and ent[2] == pytest.approx(np.log(2) / np.log(3))
    assert list(np.argsort(-ent, kind="stable")) == [4, 1, 3, 2, 0]  # 0.73 for 3 > 0.63 for 2


def test_rankings_and_deterministic_ties():
    r = rank(P, "margin")
    assert list(r.order) == [2, 4, 1, 3, 0]  # 2 and 4 tie at 1.0: input order decides
    assert r.keys == [2, 4, 1, 3, 0]
    assert list(rank(P, "least_confidence").order) == [4, 1, 2, 3, 0]
    keys = [("a.tif", 0), ("a.tif", 1), ("b.tif", 0), ("c.tif", 0), ("d.tif", 0)]
    r = rank(P, "entropy", keys=keys, exclude={("d.tif", 0)}, limit=2)
    assert r.keys == [("a.tif", 1), ("c.tif", 0)] and np.isnan(r.scores[4]) and len(r) == 2
    r = rank(P, "margin", exclude=[False, False, True, False, False])
    assert list(r.order) == [4, 1, 3, 0]
    same = np.tile([[0.6, 0.4]], (4, 1))
    assert list(rank(same, "margin").order) == [0, 1, 2, 3]


def test_threshold_closeness_for_binary_and_multilabel():
    binary = np.array([0.95, 0.52, 0.10, 0.45, 0.5])
    s = uncertainty(binary, "threshold")
    np.testing.assert_allclose(s, [0.1, 0.96, 0.2, 0.9, 1.0])
    assert list(rank(binary[:, None], "threshold").order) == [4, 1, 3, 2, 0]
    # study 4: the image's most ambiguous class decides
    ml = np.array([[0.9, 0.05, 0.5], [0.9, 0.1, 0.1], [0.3, 0.6, 0.99]])
    np.testing.assert_allclose(uncertainty(ml, "threshold"), [1.0, 0.2, 0.8])
    # per-class thresholds: closeness is scaled to the room on that side
    np.testing.assert_allclose(uncertainty([[0.2, 0.9]], "threshold", thresholds=[0.2, 0.5]), [1.0])
    np.testing.assert_allclose(uncertainty([[0.6]], "threshold", thresholds=0.2), [1 - 0.4 / 0.8])
    with pytest.raises(DataError, match="strictly between"):
        uncertainty(ml, "threshold", thresholds=1.0)


def test_ensemble_disagreement():
    agree = np.array([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1]])
    split = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    unsure = np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])
    members = np.stack([agree, split, unsure], axis=1)  # (M=3, N=3, K=2)
    var = uncertainty(members, "variance")
    assert var[0] == pytest.approx(0.0) and var[2] == pytest.approx(0.0) and var[1] == pytest.approx(4 * 2 / 9)
    vote = uncertainty(members, "vote_entropy")
    h = -(2 / 3 * np.log(2 / 3) + 1 / 3 * np.log(1 / 3)) / np.log(2)
    np.testing.assert_allclose(vote, [0.0, h, 0.0])  # ties in a member vote for the first class
    mi = uncertainty(members, "mutual_information")
    assert mi[0] == pytest.approx(0) and mi[2] == pytest.approx(0) and mi[1] > 0.9
    assert list(rank(members, "variance").order) == [1, 0, 2]
    with pytest.raises(DataError, match="at least 2 members"):
        uncertainty(members[:1], "variance")


def test_bad_input_is_explained():
    with pytest.raises(DataError, match="unknown uncertainty method"):
        uncertainty(P, "random")
    with pytest.raises(DataError, match="not logits"):
        uncertainty(P * 5 - 2, "margin")
    with pytest.raises(DataError, match="NaN"):
        uncertainty([[np.nan, 1.0]], "margin")
    with pytest.raises(DataError, match="keys"):
        rank(P, keys=["a"])
    with pytest.raises(DataError, match=r"\(N, K\)"):
        uncertainty(np.ones((2, 3, 4)) / 4, "margin")
    assert set(METHODS) >= {"least_confidence", "margin", "entropy", "threshold", "variance", "vote_entropy"}


def test_methods_for_models():
    from napari_cellclass.core.annotations.active import ENSEMBLE_METHODS, methods_for

    assert methods_for(False) == ("margin", "least_confidence", "entropy")
    ens = methods_for(False, 3)
    assert ens[0] in ENSEMBLE_METHODS and set(ENSEMBLE_METHODS) <= set(ens) and "margin" in ens
    assert methods_for(True) == ("threshold",)
    assert methods_for(True, 2) == ("variance", "threshold")  # the one disagreement score that reads sigmoid rows
