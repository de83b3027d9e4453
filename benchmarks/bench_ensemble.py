"""The seven-backbone senescence ensemble (study 4): latency per image, against the
study's own figure (24 ms per image on an RTX 3090), and batched throughput.

Random weights (``pretrained=False``): speed does not depend on the weights, and the
benchmark must run offline.
"""

from __future__ import annotations

import numpy as np
import torch

from napari_cellclass import build_model, predict

from ._measure import Result, best_time

STUDY_MS = 24.0  # Sorrentino et al. 2023: ensemble inference per image, RTX 3090


def run(cfg: dict, device: torch.device) -> list[Result]:
    size = cfg["ensemble_size"]
    n = cfg["ensemble_n"] if device.type == "cuda" else min(cfg["ensemble_n"], 8)
    amp = device.type == "cuda"
    bundle = build_model("senescence-ensemble", pretrained=False, input_size=(size, size))
    keep = cfg.get("ensemble_members")
    if keep:  # CI mode: the first members only, to prove the path in seconds (the name says how many)
        bundle = build_model([m.name for m in bundle.arch.members[:keep]], classes=list(bundle.classes),
                             preprocess=bundle.preprocess, output=bundle.output)
    members = len(bundle.arch.members) if getattr(bundle.arch, "members", None) else 1
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 4096, (3, size, size), dtype=np.uint16) for _ in range(n)]
    bundle.network.to(device)

    def one_by_one():
        for img in images:
            predict(bundle, img, batch_size=1, device=device, amp=amp, channel_axis=0)

    def batched():
        predict(bundle, images, batch_size=min(len(images), 32), device=device, amp=amp, channel_axis=0)

    t_single = best_time(one_by_one, device, cfg["repeats"]) / n
    t_batch = best_time(batched, device, cfg["repeats"]) / n
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    return [
        Result("ensemble", f"senescence ensemble ({members} backbones, {size}px): latency per image, batch 1",
               t_single * 1000, "ms", STUDY_MS, "study 4 on an RTX 3090", "", str(device),
               notes=f"{name}; AMP {'on' if amp else 'off'}", extra={"images": n}),
        Result("ensemble", f"senescence ensemble ({members} backbones, {size}px): per image, batched",
               t_batch * 1000, "ms", STUDY_MS, "study 4 on an RTX 3090", "", str(device), extra={"images": n}),
    ]
