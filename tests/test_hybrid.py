"""Study 4's hybrid: PCA + SVM heads computed in torch equal scikit-learn, files hold no pickle."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cellclass.core.hybrid import fit_svm, svm_head_from_sklearn


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
