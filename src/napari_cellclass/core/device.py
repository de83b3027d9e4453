"""Device choice and the small context managers every run of a network goes through."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from .errors import CellclassError

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` → cuda, then mps, then cpu; an explicit device that is absent is an error."""
    if isinstance(device, torch.device):
        return device
    name = (device or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CellclassError(f"device {name!r} was requested but no CUDA GPU is available", "use device='auto' or 'cpu'")
    if name.startswith("cuda:"):
        _check_cuda_index(name)
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise CellclassError("device 'mps' was requested but Apple's MPS is not available", "use device='auto' or 'cpu'")
    try:
        dev = torch.device(name)
    except RuntimeError as err:
        raise CellclassError(f"unknown device {device!r}", f"use one of {', '.join(DEVICES)}") from err
    # torch also names back-ends ('meta', 'xla', 'hpu') nothing here can train or predict on
    if dev.type not in DEVICES:
        raise CellclassError(f"unknown device {device!r}", f"use one of {', '.join(DEVICES)}")
    return dev


def _check_cuda_index(name: str) -> None:
    index = name.partition(":")[2]
    if not index.isdigit():
        return  # not an index at all: torch.device names it an unknown device
    count = torch.cuda.device_count()
    if int(index) >= count:
        raise CellclassError(f"device {name!r} was requested but this machine has {count} CUDA GPU(s) (cuda:0..cuda:{count - 1})",
                             "use device='cuda' (the first GPU) or an index that exists")


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """Mixed precision only on CUDA: bf16 where the GPU supports it, else fp16."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool = True) -> Iterator[None]:
    dtype = amp_dtype(device) if enabled else None
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` in eval mode and restore every submodule's own flag afterwards."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, was_training in flags:
            m.training = was_training


def prepare_network(network: nn.Module, device: torch.device) -> nn.Module:
    """Move to ``device``; channels_last on CUDA and CPU, where convolutions run faster in
    it (measured on 2 CPU cores: resnet18 inference 2x, a training step 10 %; the same
    results up to float rounding).  MPS stays contiguous."""
    network.to(device)
    if uses_channels_last(device):
        network.to(memory_format=torch.channels_last)
    return network


def uses_channels_last(device: torch.device) -> bool:
    """Whether networks and their inputs are kept channels_last on this device."""
    return device.type in ("cuda", "cpu")
