"""The hybrid's network: a timm backbone and an SVM head computed in torch (float64).

Registry family ``hybrid_svm`` (see ``core.models.registry``): a model file stores
the spec's shapes in JSON and the arrays as tensors, so loading rebuilds it
without scikit-learn objects and without pickle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ArchitectureError
from .heads import Classifier
from .spec import ArchSpec, register_family
from .backbones.timm_backbone import create_backbone, guess_cam_layer

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

    Same contract as :class:`TimmClassifier` (timm pools the feature map), so the
    gradient methods (Grad-CAM, Grad-CAM++, LayerCAM, HiResCAM) work through the
    SVM's decision function; CAM does not (a kernel SVM has no per-channel class
    weights) and says so.
    """

    def __init__(self, backbone: nn.Module, head: SVMHead, timm_name: str, pool: str, cam_layer: str = "") -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.timm_name = timm_name
        self.pool_kind = pool
        self.cam_layer = cam_layer or guess_cam_layer(backbone)

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


@register_family(FAMILY, {"cam_layer": "", "kernel": "poly", "n_components": 0, "n_features": 0, "n_support": ()})
def build_hybrid_network(spec: ArchSpec, in_chans: int, num_outputs: int) -> nn.Module:
    """The registry's builder for family ``hybrid_svm`` (zeros until the file's tensors load)."""
    n_support = tuple(int(v) for v in spec.option("n_support"))
    if num_outputs not in (1, len(n_support)):
        raise ArchitectureError(f"a hybrid SVM for {len(n_support)} classes cannot have {num_outputs} outputs")
    head = SVMHead(int(spec.option("n_features")), int(spec.option("n_components")), n_support,
                   str(spec.option("kernel")), num_outputs)
    backbone = create_backbone(spec.name, in_chans, spec.head.pool)
    return HybridSVMClassifier(backbone, head, spec.name, spec.head.pool, str(spec.option("cam_layer")))


def is_hybrid(bundle: Any) -> bool:
    """Whether a bundle (anything with an ``arch`` spec) holds study 4's PCA + SVM heads."""
    spec = bundle.arch
    return spec.family == FAMILY or (spec.family == "ensemble" and any(m.family == FAMILY for m in spec.members))
