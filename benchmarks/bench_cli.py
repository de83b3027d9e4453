"""`cellclass predict` on a folder of files, end to end, vs a plain timm loop over the same files."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_cellclass import build_model, save_model
from napari_cellclass.core.device import autocast, uses_channels_last

from ._measure import Result


def _plain_loop(bundle, files, batch, device):
    """Read each PNG with Pillow, resize, normalise, ``model(x)`` under inference_mode."""
    from PIL import Image

    net = bundle.network.eval().to(device)
    if uses_channels_last(device):
        net = net.to(memory_format=torch.channels_last)
    norm = bundle.preprocess.normalization
    mean = torch.tensor(norm.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(norm.std, device=device).view(1, -1, 1, 1)
    size = bundle.input_size
    with torch.inference_mode(), autocast(device, device.type == "cuda"):
        for i in range(0, len(files), batch):
            arrs = [np.asarray(Image.open(f).convert("RGB")) for f in files[i:i + batch]]
            x = torch.from_numpy(np.stack(arrs)).to(device).permute(0, 3, 1, 2).float() / 255
            x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", antialias=True)
            x = (x - mean) / std
            net(x.contiguous(memory_format=torch.channels_last) if uses_channels_last(device) else x)


def run(cfg: dict, device: torch.device) -> list[Result]:
    from skimage.io import imsave

    n, size = cfg.get("cli_n", 8), cfg.get("cli_size", 32)
    arch = cfg.get("cli_arch", "resnet18")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rng = np.random.default_rng(0)
        for i in range(n):
            imsave(root / f"img{i:04d}.png", rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), check_contrast=False)
        bundle = build_model(arch, classes=["a", "b", "c", "d"], input_size=(size, size))
        model = save_model(bundle, root / "model.safetensors")
        files = sorted(root.glob("*.png"))
        cmd = [sys.executable, "-m", "napari_cellclass.cli", "predict", str(model), str(root), "--csv", str(root / "out.csv"),
               "--no-progress", "--no-resume", "--device", str(device.type), "--batch-size", "32"]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        t_cli = time.perf_counter() - t0
        # the same model in-process, to separate start-up (Python, torch import, model load) from the work
        t0 = time.perf_counter()
        _plain_loop(bundle, files, 32, device)
        _ = time.perf_counter() - t0  # warm-up of the plain loop (first-call allocations)
        t0 = time.perf_counter()
        _plain_loop(bundle, files, 32, device)
        t_plain = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", _PLAIN_SCRIPT, arch, str(size), str(device.type), *map(str, files)], check=True)
        t_script = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch, timm, napari_cellclass.cli"], check=True)
        t_start = time.perf_counter() - t0
    return [Result("cli", f"cellclass predict, {n} PNG files 320x240 → {arch} {size}px (whole command)", t_cli, "s",
                   t_script, "plain timm script over the same files (whole command: start-up, model, loop)", "", str(device),
                   extra={"plain loop in-process, warm (s)": t_plain, "python+torch+timm import (s)": t_start,
                          "cli_minus_startup_s": t_cli - t_start})]


# What a user would write instead of `cellclass predict`: a script with timm and Pillow.
_PLAIN_SCRIPT = """
import sys, numpy as np, torch, timm
from PIL import Image
arch, size, dev, files = sys.argv[1], int(sys.argv[2]), torch.device(sys.argv[3]), sys.argv[4:]
net = timm.create_model(arch, pretrained=False, num_classes=4).eval().to(dev).to(memory_format=torch.channels_last)
mean = torch.tensor([0.485, 0.456, 0.406], device=dev).view(1, -1, 1, 1)
std = torch.tensor([0.229, 0.224, 0.225], device=dev).view(1, -1, 1, 1)
rows = []
with torch.inference_mode():
    for i in range(0, len(files), 32):
        arrs = [np.asarray(Image.open(f).convert("RGB")) for f in files[i:i + 32]]
        x = torch.from_numpy(np.stack(arrs)).to(dev).permute(0, 3, 1, 2).float() / 255
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
        rows += net(((x - mean) / std).contiguous(memory_format=torch.channels_last)).softmax(1).tolist()
print(len(rows))
"""
