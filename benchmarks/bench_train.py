"""One fine-tuning epoch of ``core.train.train`` vs a plain PyTorch training loop.

Same network (architecture, initial weights), same training and validation images,
same batch size, optimiser (Adam) and loss, same device.  The plain loop gets its
tensors ready-made on the device and evaluates the validation set after the epoch,
as a hand-written loop would; ours starts from numpy images and includes everything it
does per epoch (augmentation off, as in the plain loop).

The figure compared is the best epoch after the first (both loops time each epoch,
validation included); one-time costs of ours (reading the data, the copy of the model,
the input cache) are reported beside it.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
from torch import nn

from napari_cellclass import build_model
from napari_cellclass.core.device import autocast, uses_channels_last

from ._measure import Result, sync


def _run_ours(bundle, items, classes, cfg, device, epochs, val_fraction):
    """Wall time of the whole ``train()`` call and the loop's own per-epoch times."""
    from napari_cellclass.core.training.api import train

    gen = train(bundle, items, classes=classes, epochs=epochs, batch_size=cfg["train_batch"], lr=1e-4,
                device=str(device), val_fraction=val_fraction, seed=0, early_stopping_patience=None,
                schedule="none")
    sync(device)
    t0 = time.perf_counter()
    while True:
        try:
            next(gen)
        except StopIteration as done:
            history = done.value.history
            break
    sync(device)
    return time.perf_counter() - t0, [h["time_s"] for h in history]


def _plain_epochs(net, x_train, y_train, x_val, y_val, batch, device, epochs):
    """Per-epoch wall times of the textbook loop: shuffle, forward, loss, backward, step; then validate."""
    net = net.to(device)
    if uses_channels_last(device):  # the memory format ours uses, so only the loops' overhead differs
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    amp = device.type == "cuda"
    times = []
    for epoch in range(epochs):
        sync(device)
        t0 = time.perf_counter()
        net.train()
        order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(epoch))
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            with autocast(device, amp):
                loss = loss_fn(net(x_train[idx]), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        net.eval()
        with torch.inference_mode(), autocast(device, amp):
            for i in range(0, len(x_val), batch):
                loss_fn(net(x_val[i:i + batch]), y_val[i:i + batch])
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def run(cfg: dict, device: torch.device) -> list[Result]:
    from napari_cellclass.core.synth import generate

    size, n, batch, arch = cfg["train_size"], cfg["train_n"], cfg["train_batch"], cfg["train_arch"]
    data = generate("cell-line", n, seed=0, size=(size, size))
    items = [(img, lab, f"img{i}") for i, (img, lab) in enumerate(zip(data.images, data.labels))]
    bundle = build_model(arch, classes=data.classes, input_size=(size, size), pretrained=False)
    val_fraction = 0.25
    epochs = 1 + max(1, cfg.get("train_epochs", 3))
    total, ours_epochs = _run_ours(bundle, items, data.classes, cfg, device, epochs, val_fraction)
    # the first epoch pays for first-call allocations in both loops: compare the best later epoch
    ours_epoch = min(ours_epochs[1:])

    # the plain loop on the same split sizes, inputs prepared once by our own preprocessing
    pre = bundle.preprocess
    imgs = torch.from_numpy(np.stack(data.images)).permute(0, 3, 1, 2).float().to(device)
    x = pre.prepare_batch(imgs, torch.full((n,), 255.0, device=device))[0]
    if uses_channels_last(device):
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.tensor([lab[0] for lab in data.labels], device=device)
    n_val = max(1, round(n * val_fraction))
    x_train, y_train, x_val, y_val = x[n_val:], y[n_val:], x[:n_val], y[:n_val]
    plain_epochs = _plain_epochs(copy.deepcopy(bundle.network), x_train, y_train, x_val, y_val, batch, device, epochs)
    plain_epoch = min(plain_epochs[1:])
    return [
        Result("train", f"one training epoch, {arch} {size}px, {n} images ({n - n_val} train), batch {batch}",
               ours_epoch, "s", plain_epoch, "plain PyTorch loop on ready device tensors", "overhead ≤ 10 %", str(device),
               extra={"overhead": ours_epoch / plain_epoch - 1, "epochs": epochs,
                      "setup_s (data, copy, input cache)": total - sum(ours_epochs)}),
    ]
