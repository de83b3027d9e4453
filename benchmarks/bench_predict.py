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
        out += _cuda_variants(net, xs, n, arch, size, device, cfg["repeats"], n / t_ours)
    if cfg.get("compile"):
        out.append(_compiled(net, xs, n, arch, device, amp, cfg["repeats"], n / t_tensor))
    return out


# timm's own published inference figures on an RTX 3090 (AMP, channels_last, PyTorch 2.4,
# batch 1024): results/benchmark-infer-amp-nhwc-pt240-cu124-rtx3090.csv in
# huggingface/pytorch-image-models, images/s at 224 px (inception_v3 at 299 px).
TIMM_RTX3090_IMAGES_PER_S = {
    "resnet18": 11188.75, "resnet50": 3729.86, "densenet121": 3031.71, "tf_efficientnet_lite0": 8319.74,
    "tf_efficientnetv2_b0": 10314.64, "mobilenetv3_large_100": 13556.89, "inception_v3": 2561.31,
}


def _cuda_variants(net, xs, n, arch, size, device, repeats, ours) -> list[Result]:
    """bf16 and fp16 autocast, each channels_last, against fp32 contiguous, on the same tensors."""
    out = []
    t_fp32 = best_time(_plain_from_tensors(net.to(memory_format=torch.contiguous_format), [x.contiguous() for x in xs], device, False),
                       device, repeats)
    net.to(memory_format=torch.channels_last)
    for dtype in (torch.bfloat16, torch.float16):
        if dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
            continue

        def run(dtype=dtype):
            with torch.inference_mode(), torch.autocast("cuda", dtype=dtype):
                for x in xs:
                    net(x)
        t = best_time(run, device, repeats)
        out.append(Result("predict", f"AMP {str(dtype).split('.')[-1]} + channels_last vs fp32 ({arch})", n / t, "images/s",
                          n / t_fp32, "fp32, contiguous", "", str(device)))
    if arch in TIMM_RTX3090_IMAGES_PER_S and size == 224:
        out.append(Result("predict", f"predict() {arch} vs timm's published RTX 3090 figure", ours, "images/s",
                          TIMM_RTX3090_IMAGES_PER_S[arch], "timm benchmark CSV, RTX 3090, AMP, batch 1024", "same GPU class",
                          str(device), notes=f"this run: {torch.cuda.get_device_name(device)}, batch {xs[0].shape[0]}"))
    return out


def _compiled(net, xs, n, arch, device, amp, repeats, eager) -> Result:
    """Optional ``torch.compile``: the same tensor loop on the compiled network (compile time apart)."""
    import time

    try:
        compiled = torch.compile(net)
        t0 = time.perf_counter()
        _plain_from_tensors(compiled, xs[:1], device, amp)()
        t_compile = time.perf_counter() - t0
        t = best_time(_plain_from_tensors(compiled, xs, device, amp), device, repeats)
    except Exception as err:  # noqa: BLE001 - a missing compiler toolchain is a result, not a crash
        return Result("predict", f"torch.compile ({arch})", float("nan"), "images/s", eager, "eager tensor loop", "",
                      str(device), notes=f"skipped: {type(err).__name__}: {str(err).splitlines()[0][:120]}")
    return Result("predict", f"torch.compile ({arch}), tensor loop", n / t, "images/s", eager, "eager tensor loop", "optional",
                  str(device), extra={"compile_s (first batch)": t_compile})
