"""Training on several processes with DistributedDataParallel, as ``torchrun`` starts them.

``torchrun --nproc_per_node N -m napari_cellclass.cli train ...`` sets ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK``; the training loop asks :func:`context` whether it
runs distributed and, if so, wraps the network, gives each process its own shard of
every epoch and averages what it reports.  One process (rank 0) writes files.

Backends: NCCL when every process has its own GPU, gloo otherwise (CPU processes —
what the tests run).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import CellclassError


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def context() -> DistContext:
    """The process's place in a torchrun job (a single-process context outside one)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as err:
        raise CellclassError(f"malformed torchrun environment: {err}", "start the job with torchrun") from err
    return DistContext(rank, world, local)


def setup(ctx: DistContext, device: torch.device) -> torch.device:
    """Join the process group (once) and return this process's device."""
    if not ctx.active:
        return device
    import torch.distributed as dist

    if device.type == "cuda":
        if torch.cuda.device_count() <= ctx.local_rank:
            raise CellclassError(f"process {ctx.rank} wants GPU {ctx.local_rank} but only {torch.cuda.device_count()} exist",
                                 "start no more processes per node than GPUs, or train with --device cpu")
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def wrap(network: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    """DDP around the network in a distributed job; the network itself otherwise."""
    if not ctx.active:
        return network
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    # frozen stages leave parameters without gradients: DDP must be told to look for them
    return DistributedDataParallel(network, device_ids=ids, find_unused_parameters=True)


def shard(indices: np.ndarray, ctx: DistContext, epoch: int, seed: int) -> np.ndarray:
    """This process's part of one epoch: one shared shuffle, every ``world``-th item.

    Shards are padded (by wrapping around) to the same length, because DDP needs every
    process to run the same number of steps.
    """
    order = np.random.default_rng([seed, epoch]).permutation(np.asarray(indices))
    if not ctx.active:
        return order
    per = -(-len(order) // ctx.world_size)
    padded = np.resize(order, per * ctx.world_size)
    return padded[ctx.rank::ctx.world_size]


def mean_across(value: float, ctx: DistContext) -> float:
    """The mean of a number over all processes (losses reported by each shard)."""
    if not ctx.active:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / ctx.world_size


def barrier(ctx: DistContext) -> None:
    if ctx.active:
        import torch.distributed as dist

        dist.barrier()


def teardown(ctx: DistContext) -> None:
    if ctx.active:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
