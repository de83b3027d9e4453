"""Fitting the hybrid: backbone features of a data set → StandardScaler → PCA → SVC,
tuned by stratified CV grid search (scikit-learn), copied into SVM heads."""

from __future__ import annotations

import copy
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ...models.bundle import ModelBundle
from ...errors import ArchitectureError, DataError
from ...models.ensemble import Ensemble
from ...models.heads import HeadSpec
from ...models.spec import ArchSpec, ensemble_spec
from ...models.backbones.timm_backbone import TimmClassifier
from ...models.hybrid_svm import DEFAULT_GRID, FAMILY, HybridSVMClassifier, SVMHead

@dataclass
class HybridProgress:
    stage: str  # 'features' | 'fit'
    done: int
    total: int
    message: str = ""


def _members(bundle: ModelBundle) -> list[tuple[ArchSpec, nn.Module]]:
    net, spec = bundle.network, bundle.arch
    pairs = list(zip(spec.members, net.members)) if spec.family == "ensemble" else [(spec, net)]
    for s, m in pairs:
        if s.family not in ("timm", FAMILY) or not isinstance(m, (TimmClassifier, HybridSVMClassifier)):
            raise ArchitectureError(
                f"the hybrid SVM needs timm backbones, but {s.describe()} is not one",
                "start from a timm architecture or the senescence-ensemble:hybrid-svm preset",
            )
    return pairs


def fit_svm(features: np.ndarray, y: np.ndarray, *, kernel: str = "poly", grid: dict[str, Sequence] | None = None,
            cv: int = 3, seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """Fit ``StandardScaler → PCA → SVC`` on features, tuned by stratified CV grid search.

    Returns the fitted scikit-learn pipeline and a JSON-ready summary (best
    parameters, CV score, number of components and support vectors).
    """
    from sklearn.decomposition import PCA
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    counts = np.bincount(y)
    if (counts > 0).sum() < 2:
        raise DataError("the hybrid SVM needs examples of at least two classes", "label images of every class")
    g = {**DEFAULT_GRID, **(grid or {})}
    if kernel != "poly":  # degree and coef0 only shape the polynomial kernel
        g = {**g, "degree": (3,), "coef0": (0.0,)}
    pipe = Pipeline([("scale", StandardScaler()), ("pca", PCA(svd_solver="full")),
                     ("svc", SVC(kernel=kernel, gamma="scale"))])
    params = {"pca__n_components": list(g["pca_variance"]), "svc__C": list(g["C"]),
              "svc__degree": list(g["degree"]), "svc__coef0": list(g["coef0"])}
    folds = min(cv, int(counts[counts > 0].min()))
    if folds >= 2 and sum(len(v) for v in params.values()) > len(params):
        search = GridSearchCV(pipe, params, cv=StratifiedKFold(folds, shuffle=True, random_state=seed), n_jobs=1)
        search.fit(features, y)
        model, best, score = search.best_estimator_, search.best_params_, float(search.best_score_)
    else:  # too few images per class to cross-validate: the grid's first values
        best = {k: v[0] for k, v in params.items()}
        model, score = pipe.set_params(**best).fit(features, y), None
    svc = model.named_steps["svc"]
    summary = {"best_params": {k.split("__")[1]: (float(v) if isinstance(v, float) else v) for k, v in best.items()},
               "cv_accuracy": score, "cv_folds": folds if score is not None else 0,
               "n_components": int(model.named_steps["pca"].n_components_),
               "n_support": [int(v) for v in svc.n_support_], "kernel": kernel}
    return model, summary


def svm_head_from_sklearn(pipe: Any, num_classes: int, n_outputs: int) -> SVMHead:
    """Copy a fitted ``StandardScaler → PCA → SVC`` pipeline's arrays into an SVMHead."""
    scale, pca, svc = pipe.named_steps["scale"], pipe.named_steps["pca"], pipe.named_steps["svc"]
    if list(svc.classes_) != list(range(num_classes)):
        raise DataError(f"the SVM saw classes {list(svc.classes_)}, not all of 0..{num_classes - 1}",
                        "every class needs training images for the hybrid SVM")
    head = SVMHead(int(scale.mean_.size), int(pca.n_components_), [int(v) for v in svc.n_support_], svc.kernel, n_outputs)
    arrays = {"scale_mean": scale.mean_, "scale_std": scale.scale_, "pca_mean": pca.mean_, "pca_components": pca.components_,
              "support_vectors": svc.support_vectors_, "dual_coef": svc.dual_coef_, "intercept": svc.intercept_,
              "gamma": svc._gamma, "coef0": svc.coef0, "degree": svc.degree}
    with torch.no_grad():
        for name, value in arrays.items():
            getattr(head, name).copy_(torch.as_tensor(np.asarray(value, np.float64)))
    return head


def extract_features(bundle: ModelBundle, data: Any, device: str | torch.device = "auto", batch_size: int = 32,
                     stop: Any = None) -> Generator[HybridProgress, None, list[np.ndarray]]:
    """Pooled backbone features (N, D) of every member, for every item of ``data``."""
    from ...device import eval_mode, prepare_network, resolve_device
    from ...evaluation.evaluate import as_dataset, network_batches

    ds = as_dataset(bundle, data)
    members = _members(bundle)
    dev = resolve_device(device)
    feats: list[list[np.ndarray]] = [[] for _ in members]
    done = 0
    with bundle.lock, eval_mode(bundle.network):
        prepare_network(bundle.network, dev)
        for idx, x in network_batches(bundle, ds, dev, batch_size):
            if stop is not None and stop.is_set():
                from ...errors import Cancelled

                raise Cancelled("fitting the hybrid SVM")
            # inference mode only around the work: a generator must not leave it on while suspended
            with torch.inference_mode():
                for out, (_, m) in zip(feats, members):
                    out.append(m.pool_features(m.forward_features(x)).double().cpu().numpy())
            done += len(idx)
            yield HybridProgress("features", done, len(ds), f"backbone features of {done}/{len(ds)} images")
    return [np.concatenate(f) for f in feats]


def fit_hybrid_steps(model: ModelBundle, data: Any, *, device: str | torch.device = "auto", batch_size: int = 32,
                     kernel: str = "poly", grid: dict[str, Sequence] | None = None, cv: int = 3, seed: int = 0,
                     stop: Any = None) -> Generator[HybridProgress, None, ModelBundle]:
    """Like :func:`fit_hybrid`, yielding progress (for the viewer's workers)."""
    from ...evaluation.evaluate import as_dataset

    if model.multilabel:
        raise ArchitectureError("the hybrid SVM is for single-label models", "use a softmax or binary output")
    ds = as_dataset(model, data)
    y = np.asarray([lab[0] for lab in ds.labels], np.int64)
    feats = yield from extract_features(model, ds, device, batch_size, stop)
    n_out = 1 if model.output == "binary" else model.num_classes
    specs, nets, summaries = [], [], []
    pairs = _members(model)
    for i, ((spec, member), f) in enumerate(zip(pairs, feats)):
        pipe, summary = fit_svm(f, y, kernel=kernel, grid=grid, cv=cv, seed=seed)
        # the frozen backbone is a copy: the input bundle is never modified
        net = HybridSVMClassifier(copy.deepcopy(member.backbone).cpu(), svm_head_from_sklearn(pipe, model.num_classes, n_out),
                                  member.timm_name, member.pool_kind, member.cam_layer)
        options = (("cam_layer", member.cam_layer), ("kernel", kernel), ("n_components", summary["n_components"]),
                   ("n_features", int(f.shape[1])), ("n_support", tuple(summary["n_support"])))
        specs.append(ArchSpec(FAMILY, member.timm_name, HeadSpec(pool=spec.head.pool), options))
        nets.append(net.eval())
        summaries.append({"backbone": member.timm_name, **summary})
        yield HybridProgress("fit", i + 1, len(pairs), f"SVM {i + 1}/{len(pairs)} ({member.timm_name}): "
                             f"CV accuracy {summary['cv_accuracy']}")
    if len(nets) == 1 and model.arch.family != "ensemble":
        network, arch = nets[0], specs[0]
    else:
        network, arch = Ensemble(nets, model.output, "hard"), ensemble_spec(specs, vote="hard")
    prov = {**{k: v for k, v in model.provenance.items() if k not in ("loaded_from", "saved")},
            "hybrid": {"members": summaries, "n_train": len(ds), "class_counts": ds.class_counts(), "seed": seed,
                       "vote": "hard", "pipeline": "StandardScaler → PCA → SVC"}}
    return ModelBundle(network.eval(), list(model.classes), model.output, model.in_chans, model.preprocess, arch,
                       list(model.channel_names), None, prov)


def fit_hybrid(model: ModelBundle | str, data: Any, **kwargs: Any) -> ModelBundle:
    """Fit one PCA + SVM per backbone of ``model`` on ``data``; hard vote across them.

    ``model``: a bundle of timm networks (one, or an ensemble — e.g. built from the
    ``senescence-ensemble:hybrid-svm`` preset), or a preset/architecture name built
    with its pretrained weights.  ``data``: a Dataset or anything ``load_dataset``
    takes.  Returns a new bundle; the backbones stay frozen.
    """
    if isinstance(model, str):
        from ...presets.factory import build_model

        model = build_model(model, classes=kwargs.pop("classes", None))
    gen = fit_hybrid_steps(model, data, **kwargs)
    while True:
        try:
            next(gen)
        except StopIteration as done:
            return done.value
