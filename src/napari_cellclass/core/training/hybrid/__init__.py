"""Study 4's hybrid: frozen backbone features → PCA → polynomial SVM, hard vote.

Fitting uses scikit-learn (``StandardScaler → PCA → SVC(kernel='poly')``, tuned by
cross-validated grid search, as the paper did).  The fitted model is *not* kept as
a scikit-learn object: the scaler's mean/scale, the PCA mean and components, and
the SVM's support vectors, dual coefficients, intercepts and kernel parameters
become float64 buffers of an :class:`SVMHead`, which computes the SVM decision
function in torch.  Each backbone with its SVMHead is an ordinary network of the
registry family ``hybrid_svm``, and several of them form an ``Ensemble`` with hard
voting.  So a hybrid model is an ordinary :class:`ModelBundle`: saved by
``save_model`` as safetensors + JSON (never pickle), loaded, predicted, evaluated
and explained like any other model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ...models.bundle import ModelBundle
from ...models.modelfile import load_model, save_model
from ...errors import ModelFileError
from .fit import HybridProgress, extract_features, fit_hybrid, fit_hybrid_steps, fit_svm, svm_head_from_sklearn
from .hook import is_hybrid_preset, train_hybrid
from ...models.hybrid_svm import (DEFAULT_GRID, FAMILY, KERNELS, HybridSVMClassifier, SVMHead, build_hybrid_network, is_hybrid)

def save_hybrid(bundle: ModelBundle, path: str | Path) -> Path:
    """Save a hybrid model: safetensors tensors + JSON metadata, like every model file."""
    if not is_hybrid(bundle):
        raise ModelFileError("this model is not a hybrid PCA + SVM model", "save it with save_model")
    return save_model(bundle, path)


def load_hybrid(path: str | Path, device: str | torch.device | None = None) -> ModelBundle:
    bundle = load_model(path, device)
    if not is_hybrid(bundle):
        raise ModelFileError(f"{path} is not a hybrid PCA + SVM model", "load it with load_model")
    return bundle


def predict_hybrid(bundle: ModelBundle, images: Any, **kwargs: Any) -> dict[str, Any]:
    """Predicted class and the vote fraction of every class, per image.

    Each backbone's SVM casts one vote; ``votes`` (N, K) are the fractions (what
    ``predict`` returns for this model), ``labels`` the winning class names.
    """
    from ...inference.predict import predict

    if not is_hybrid(bundle):
        raise ModelFileError("this model is not a hybrid PCA + SVM model", "use predict()")
    votes = predict(bundle, images, **kwargs)
    return {"classes": list(bundle.classes), "votes": votes, "labels": [bundle.classes[int(i)] for i in votes.argmax(1)]}


__all__ = ["FAMILY", "KERNELS", "DEFAULT_GRID", "SVMHead", "HybridSVMClassifier", "build_hybrid_network", "is_hybrid",
           "HybridProgress", "fit_svm", "svm_head_from_sklearn", "extract_features", "fit_hybrid_steps", "fit_hybrid",
           "save_hybrid", "load_hybrid", "predict_hybrid", "is_hybrid_preset", "train_hybrid"]
