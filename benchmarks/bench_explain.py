"""Grad-CAM cost against one forward pass of the same model on the same images.

Target: an explanation costs at most 3 forward passes (one forward + one backward
≈ 3 forward-equivalents is the textbook cost).  Also compared with
pytorch-grad-cam's ``GradCAM`` on the same layer when that package is importable
(it is not a dependency: it pulls OpenCV into napari).
"""

from __future__ import annotations

import numpy as np
import torch

from napari_cellclass import build_model
from napari_cellclass.core.explain import explain, explain_batch
from napari_cellclass.core.explain.target_layers import default_layer, resolve

from ._measure import Result, best_time


def _forward(net, x):
    def run():
        with torch.inference_mode():
            net(x)
    return run


def _pytorch_grad_cam(net, layer, x, classes):
    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        return None
    targets = [ClassifierOutputTarget(int(c)) for c in classes]

    def run():
        with GradCAM(model=net, target_layers=[layer]) as cam:
            cam(input_tensor=x, targets=targets)
    return run


def run(cfg: dict, device: torch.device) -> list[Result]:
    arch, size, n = cfg["explain_arch"], cfg["explain_size"], cfg["explain_n"]
    bundle = build_model(arch, classes=["a", "b", "c", "d"], input_size=(size, size))
    bundle.network.to(device)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(n)]
    x = torch.stack([bundle.preprocess.prepare(torch.from_numpy(im).permute(2, 0, 1).to(device), 255.0)[0] for im in images])
    net = bundle.network.eval()
    reps = cfg["repeats"]
    t_fwd1 = best_time(_forward(net, x[:1]), device, reps)
    t_fwdn = best_time(_forward(net, x), device, reps)
    t_one = best_time(lambda: explain(bundle, images[0], "gradcam", device=device), device, reps)
    t_batch = best_time(lambda: explain_batch(bundle, images, "gradcam", batch_size=n, device=device), device, reps)
    t_cam = best_time(lambda: explain(bundle, images[0], "cam", device=device), device, reps)
    layer = default_layer(net)
    out = [
        Result("explain", f"Grad-CAM explain() {arch} {size}px, 1 image", t_one * 1e3, "ms", t_fwd1 * 1e3,
               "one forward pass, same model and image", "ratio ≤ 3", str(device), extra={"layer": layer}),
        Result("explain", f"Grad-CAM explain_batch() {arch} {size}px, {n} images in one batch", t_batch / n * 1e3, "ms/image",
               t_fwdn / n * 1e3, f"forward pass of the same {n}-image batch", "ratio ≤ 3", str(device)),
        Result("explain", f"CAM (classifier weights) {arch} {size}px, 1 image", t_cam * 1e3, "ms", t_fwd1 * 1e3,
               "one forward pass, same model and image", "", str(device)),
    ]
    with torch.no_grad():
        classes = net(x).argmax(1).tolist()
    ref = _pytorch_grad_cam(net, resolve(net, layer)[1], x, classes)
    if ref is None:
        out.append(Result("explain", "pytorch-grad-cam GradCAM (same layer, same batch)", float("nan"), "ms/image",
                          notes="skipped: pytorch-grad-cam is not installed (not a dependency; it needs OpenCV)"))
    else:
        t_ref = best_time(ref, device, reps)
        out.append(Result("explain", f"explain_batch() vs pytorch-grad-cam GradCAM, {n} images", t_batch / n * 1e3, "ms/image",
                          t_ref / n * 1e3, "pytorch-grad-cam GradCAM on the same layer", "", str(device)))
    return out
