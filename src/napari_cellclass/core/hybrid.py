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

import copy
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .bundle import ModelBundle, load_model, save_model
from .errors import ArchitectureError, DataError, ModelFileError
from .models.ensemble import Ensemble
from .models.heads import Classifier, HeadSpec
from .models.registry import ArchSpec, ensemble_spec
from .models.timm_backbone import TimmClassifier, _guess_cam_layer, create_backbone

FAMILY = "hybrid_svm"
KERNELS = ("poly", "rbf", "linear")
#: the grid searched by cross-validation (the paper tuned its SVMs by CV, values not given)
DEFAULT_GRID: dict[str, tuple] = {"pca_variance": (0.8, 0.95), "C": (0.1, 1.0, 10.0), "degree": (2, 3), "coef0": (0.0, 1.0)}


# --------------------------------------------------------------------------- the network
class SVMHead(nn.Module):
    """Pooled features → standardise → PCA → kernel SVM decision → logits.

    Buffers follow scikit-learn's public attributes (``support_vectors_``,
    ``dual_coef_``, ``intercept_``, ``n_support_``, ``_gamma``), so the decision
    values equal ``SVC.decision_function`` — one-vs-one values turned into
    one-vs-rest scores the way scikit-learn does for more than two classes (their
    argmax breaks tied one-vs-one votes by confidence, as ``SVC(break_ties=True)``).
    """

    def __init__(self, n_features: int, n_components: int, n_support: Sequence[int], kernel: str = "poly",
                 n_outputs: int = 1) -> None:
        super().__init__()
        if kernel not in KERNELS:
            raise ArchitectureError(f"unknown SVM kernel {kernel!r}", f"use one of {', '.join(KERNELS)}")
        k = len(n_support)
        if k < 2 or n_features < 1 or n_components < 1:
            raise ArchitectureError(f"inconsistent hybrid SVM shape: {n_features} features, {n_components} components, "
                                    f"support {list(n_support)}")
        s = int(sum(n_support))
        f64 = torch.float64
        self.kernel = kernel
        self.n_outputs = int(n_outputs)  # 1: binary output (one logit); K: softmax
        self.n_support = tuple(int(v) for v in n_support)
        for name, shape in (("scale_mean", (n_features,)), ("scale_std", (n_features,)), ("pca_mean", (n_features,)),
                            ("pca_components", (n_components, n_features)), ("support_vectors", (s, n_components)),
                            ("dual_coef", (k - 1, s)), ("intercept", (k * (k - 1) // 2,)),
                            ("gamma", ()), ("coef0", ()), ("degree", ())):
            self.register_buffer(name, torch.zeros(shape, dtype=f64))

    @property
    def num_classes(self) -> int:
        return len(self.n_support)

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        # Apple's MPS has no float64: there the SVM stays on the CPU (it is tiny next
        # to the backbone) and forward() moves the pooled features to it and back.
        if fn(torch.zeros(1)).device.type == "mps":
            return self
        return super()._apply(fn, recurse)

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        x = pooled.to(self.pca_mean.device, self.pca_mean.dtype)
        x = (x - self.scale_mean) / self.scale_std
        return (x - self.pca_mean) @ self.pca_components.T

    def kernel_matrix(self, z: torch.Tensor) -> torch.Tensor:
        sv = self.support_vectors
        if self.kernel == "rbf":
            return torch.exp(-self.gamma * torch.cdist(z, sv).square())
        dot = z @ sv.T
        if self.kernel == "linear":
            return dot
        return (self.gamma * dot + self.coef0) ** self.degree

    def decision_ovo(self, pooled: torch.Tensor) -> torch.Tensor:
        """(N, K(K-1)/2) one-vs-one decision values, as libsvm computes them."""
        kmat = self.kernel_matrix(self.project(pooled))
        starts = np.concatenate([[0], np.cumsum(self.n_support)])
        k = self.num_classes
        out = []
        for i in range(k):
            for j in range(i + 1, k):
                si, sj = slice(starts[i], starts[i + 1]), slice(starts[j], starts[j + 1])
                out.append(kmat[:, si] @ self.dual_coef[j - 1, si] + kmat[:, sj] @ self.dual_coef[i, sj])
        return torch.stack(out, dim=1) + self.intercept

    def decision(self, pooled: torch.Tensor) -> torch.Tensor:
        """What ``SVC.decision_function`` returns: (N,) for two classes, else (N, K) one-vs-rest."""
        dec = self.decision_ovo(pooled)
        k = self.num_classes
        if k == 2:
            return dec[:, 0]
        votes = torch.zeros(dec.shape[0], k, dtype=dec.dtype, device=dec.device)
        conf = torch.zeros_like(votes)
        p = 0
        for i in range(k):
            for j in range(i + 1, k):
                conf[:, i] += dec[:, p]
                conf[:, j] -= dec[:, p]
                votes[:, i] += (dec[:, p] >= 0).to(dec.dtype)
                votes[:, j] += (dec[:, p] < 0).to(dec.dtype)
                p += 1
        return votes + conf / (3 * (conf.abs() + 1))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        # float64 throughout, whatever mixed precision the backbone ran in
        with torch.autocast(device_type=self.pca_mean.device.type, enabled=False):
            d = self.decision(pooled)
        if d.ndim == 1:  # two classes: positive → the second class
            d = d[:, None] if self.n_outputs == 1 else torch.stack([-d / 2, d / 2], 1)
        return d.to(pooled.device, torch.float32)


class HybridSVMClassifier(Classifier):
    """A timm backbone whose head is an :class:`SVMHead` (registry family ``hybrid_svm``).

    Same contract as :class:`TimmClassifier` (timm pools the feature map), so
    Grad-CAM and the FCN-free explainers work through the SVM's decision function.
    """

    def __init__(self, backbone: nn.Module, head: SVMHead, timm_name: str, pool: str, cam_layer: str = "") -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.timm_name = timm_name
        self.pool_kind = pool
        self.cam_layer = cam_layer or _guess_cam_layer(backbone)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)

    def pool_features(self, features: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_head(features, pre_logits=True)

    def reset_classifier(self, num_outputs: int) -> None:
        raise ArchitectureError("a hybrid SVM model cannot be fine-tuned by gradient descent",
                                "refit it with fit_hybrid, or train the preset's non-hybrid variant")

    @property
    def num_outputs(self) -> int:
        return self.head.n_outputs


def build_hybrid_network(spec: ArchSpec, in_chans: int, num_outputs: int) -> nn.Module:
    """The registry's builder for family ``hybrid_svm`` (zeros until the file's tensors load)."""
    n_support = tuple(int(v) for v in spec.option("n_support"))
    if num_outputs not in (1, len(n_support)):
        raise ArchitectureError(f"a hybrid SVM for {len(n_support)} classes cannot have {num_outputs} outputs")
    head = SVMHead(int(spec.option("n_features")), int(spec.option("n_components")), n_support,
                   str(spec.option("kernel")), num_outputs)
    backbone = create_backbone(spec.name, in_chans, spec.head.pool)
    return HybridSVMClassifier(backbone, head, spec.name, spec.head.pool, str(spec.option("cam_layer")))


def is_hybrid(bundle: ModelBundle) -> bool:
    spec = bundle.arch
    return spec.family == FAMILY or (spec.family == "ensemble" and any(m.family == FAMILY for m in spec.members))


# --------------------------------------------------------------------------- fitting
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
    from .device import eval_mode, prepare_network, resolve_device
    from .evaluate import as_dataset, network_batches

    ds = as_dataset(bundle, data)
    members = _members(bundle)
    dev = resolve_device(device)
    feats: list[list[np.ndarray]] = [[] for _ in members]
    done = 0
    with bundle.lock, eval_mode(bundle.network):
        prepare_network(bundle.network, dev)
        for idx, x in network_batches(bundle, ds, dev, batch_size):
            if stop is not None and stop.is_set():
                from .errors import Cancelled

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
    from .evaluate import as_dataset

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
        from .bundle import build_model

        model = build_model(model, classes=kwargs.pop("classes", None))
    gen = fit_hybrid_steps(model, data, **kwargs)
    while True:
        try:
            next(gen)
        except StopIteration as done:
            return done.value


# --------------------------------------------------------------------------- files and prediction
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
    from .predict import predict

    if not is_hybrid(bundle):
        raise ModelFileError("this model is not a hybrid PCA + SVM model", "use predict()")
    votes = predict(bundle, images, **kwargs)
    return {"classes": list(bundle.classes), "votes": votes, "labels": [bundle.classes[int(i)] for i in votes.argmax(1)]}


# --------------------------------------------------------------------------- the training hook
def is_hybrid_preset(name: Any) -> bool:
    """True for presets whose 'training' is fitting PCA + SVM heads (``…:hybrid-svm``)."""
    return isinstance(name, str) and name.endswith(":hybrid-svm")


def train_hybrid(model: Any, data: Any, *, classes: list[str] | None = None, val_data: Any = None, recipe: Any = None,
                 preset: str | None = None, device: str | torch.device = "auto", stop: Any = None, seed: int = 0,
                 channel_axis: Any = "auto", **overrides: Any) -> Generator[Any, None, Any]:
    """``core.train.train``'s signature and events for the hybrid preset.

    Yields ``TrainEvent``s (features extracted, SVMs fitted, validation scored) and
    returns a ``TrainResult`` whose bundle is the fitted hybrid; the train CLI and
    the viewer can call it wherever they call ``train`` for a hybrid preset.
    Overrides used: ``pretrained``, ``weights``, ``input_size``, ``batch_size``,
    ``val_fraction``, ``kernel``, ``grid``, ``cv``; the others do not apply to an SVM.
    """
    from .bundle import build_model
    from .data import load_dataset, stratified_split
    from .errors import Cancelled
    from .evaluate import evaluate
    from .presets import PRESETS
    from .train import TrainEvent, TrainResult

    t0 = time.perf_counter()
    ds = load_dataset(data, classes, channel_axis=channel_axis, multi_label=False)
    name = preset or (model if isinstance(model, str) else None)
    if isinstance(model, ModelBundle):
        base = model
    else:
        p = PRESETS.get(name or "")
        output = p.output if p is not None and (p.output != "binary" or len(ds.classes) == 2) else "softmax"
        size = overrides.get("input_size")
        base = build_model(model, classes=ds.classes, in_chans=ds.in_chans, pretrained=overrides.get("pretrained"),
                           weights=overrides.get("weights"), output=output, input_size=None if size is None else tuple(size))
    val_fraction = float(overrides.get("val_fraction", getattr(recipe, "val_fraction", None) or
                                       (PRESETS[name].train.val_fraction if name in PRESETS else 0.1)))
    if val_data is not None:
        train_ds, val_ds = ds, load_dataset(val_data, ds.classes, channel_axis=channel_axis, multi_label=False)
    elif val_fraction > 0:
        tr, va = stratified_split(ds.labels, val_fraction, seed)
        train_ds, val_ds = ds.subset(tr), ds.subset(va)
    else:
        train_ds, val_ds = ds, None
    yield TrainEvent("start", 0, 1, 0, len(train_ds), None, None, {}, None, None,
                     f"hybrid PCA + SVM on {len(train_ds)} images ({len(val_ds) if val_ds else 0} for validation)")
    opts = {k: overrides[k] for k in ("kernel", "grid", "cv", "batch_size") if k in overrides}
    gen = fit_hybrid_steps(base, train_ds, device=device, seed=seed, stop=stop, **opts)
    try:
        while True:
            try:
                ev = next(gen)
            except StopIteration as done:
                bundle = done.value
                break
            yield TrainEvent("step", 0, 1, ev.done if ev.stage == "features" else len(train_ds), len(train_ds),
                             None, None, {}, None, None, ev.message)
    except Cancelled:
        yield TrainEvent("cancelled", 0, 1, 0, len(train_ds), None, None, {}, None, None, "cancelled")
        # nothing fitted: the (unchanged) starting network, with a training record saying so
        unfitted = ModelBundle(base.network, list(base.classes), base.output, base.in_chans, base.preprocess, base.arch,
                               list(base.channel_names), base.thresholds,
                               {**base.provenance, "training": {"method": "hybrid (cancelled before the SVMs were fitted)",
                                                                "epochs_run": 0, "best_epoch": None, "metrics": {},
                                                                "time_s": time.perf_counter() - t0}})
        return TrainResult(unfitted, [], cancelled=True, stopped_early=False)
    metrics: dict[str, float] = {}
    if val_ds is not None and len(val_ds):
        m = evaluate(bundle, val_ds, device=device)
        metrics = {f"val_{k}": float(m[k]) for k in ("accuracy", "macro_f1", "auc_macro") if m.get(k) is not None}
    history = [{"epoch": 1, "loss": None, "val_loss": None, **metrics}]
    bundle.provenance["preset"] = name if name in PRESETS else bundle.provenance.get("preset")
    bundle.provenance["training"] = {
        "method": "hybrid: frozen backbone features → PCA → SVM (scikit-learn), hard vote", "epochs_run": 0,
        "time_s": time.perf_counter() - t0,
        "best_epoch": None, "seed": seed, "history": history, "metrics": metrics,
        "data": {"n_train": len(train_ds), "n_val": len(val_ds) if val_ds else 0, "class_counts": ds.class_counts()},
    }
    yield TrainEvent("epoch", 1, 1, len(train_ds), len(train_ds), None, None, metrics, 0.0, 1, "SVMs fitted")
    yield TrainEvent("done", 1, 1, len(train_ds), len(train_ds), None, None, metrics, 0.0, 1, "done")
    return TrainResult(bundle, history, cancelled=False, stopped_early=False)
