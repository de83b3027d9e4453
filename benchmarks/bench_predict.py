"""predict() throughput against plain timm loops on the same model, data and device."""

from __future__ import annotations

import numpy as np
import torch

from napari_cellclass import build_model, predict
from napari_cellclass.core.device import autocast, uses_channels_last

from ._measure import Result, best_time


def _plain_from_tensors(net, batches, device, amp):
    """The textbook loop: ``model(x)`` on ready device tensors under inference_mode."""
    def run():
        with torch.inference_mode(), autocast(device, amp):
            for x in batches:
                net(x)
    return run


def _plain_from_numpy(net, images, batch, device, amp, mean, std):
    """What a user writes from numpy arrays: stack, move, scale, normalise, forward."""
    m = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=device).view(1, -1, 1, 1)

    def run():
        with torch.inference_mode(), autocast(device, amp):
            for i in range(0, len(images), batch):
                x = torch.from_numpy(np.stack(images[i:i + batch])).to(device).permute(0, 3, 1, 2).float()
                x = (x / 255.0 - m) / s
                if uses_channels_last(device):
                    x = x.contiguous(memory_format=torch.channels_last)
                net(x)
    return run


def run(cfg: dict, device: torch.device) -> list[Result]:
    arch, size, n, batch = cfg["predict_arch"], cfg["predict_size"], cfg["predict_n"], cfg["predict_batch"]
    amp = device.type == "cuda"
    bundle = build_model(arch, classes=["a", "b", "c", "d"], input_size=(size, size))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(n)]
    net = bundle.network.eval().to(device)
    # the plain loops get the same memory format predict() uses, so the comparison is of overhead alone
    if uses_channels_last(device):
        net.to(memory_format=torch.channels_last)
    norm = bundle.preprocess.normalization
    xs = [bundle.preprocess.prepare_batch(torch.from_numpy(np.stack(images[i:i + batch])).permute(0, 3, 1, 2).to(device),
                                          torch.full((len(images[i:i + batch]),), 255.0, device=device))[0]
          for i in range(0, n, batch)]
    if uses_channels_last(device):
        xs = [x.contiguous(memory_format=torch.channels_last) for x in xs]
    t_ours = best_time(lambda: predict(bundle, images, batch_size=batch, device=device, amp=amp), device, cfg["repeats"])
    t_tensor = best_time(_plain_from_tensors(net, xs, device, amp), device, cfg["repeats"])
    t_numpy = best_time(_plain_from_numpy(net, images, batch, device, amp, norm.mean, norm.std), device, cfg["repeats"])
    out = [
        Result("predict", f"predict() {arch} {size}px, {n} images, batch {batch}", n / t_ours, "images/s",
               n / t_tensor, "plain timm loop on ready device tensors", "overhead ≤ 10 %", str(device),
               extra={"overhead_vs_tensor_loop": t_ours / t_tensor - 1, "overhead_vs_numpy_loop": t_ours / t_numpy - 1}),
        Result("predict", f"plain loop from numpy arrays ({arch})", n / t_numpy, "images/s", n / t_tensor,
               "plain timm loop on ready device tensors", "", str(device)),
    ]
    if device.type == "cuda":
        t_fp32 = best_time(_plain_from_tensors(net.to(memory_format=torch.contiguous_format), [x.contiguous() for x in xs], device, False),
                           device, cfg["repeats"])
        out.append(Result("predict", f"AMP {str(torch.get_autocast_dtype('cuda')).split('.')[-1]} + channels_last vs fp32 ({arch})",
                          n / t_tensor, "images/s", n / t_fp32, "fp32, contiguous", "", str(device)))
    return out
