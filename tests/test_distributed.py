"""Training under torchrun: DistributedDataParallel on two CPU processes (gloo)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_cellclass.core.training.distributed import DistContext, shard


def test_shards_cover_every_item_once_per_epoch_and_have_equal_length():
    idx = np.arange(11)
    parts = [shard(idx, DistContext(r, 3, r), epoch=2, seed=5) for r in range(3)]
    assert {len(p) for p in parts} == {4}  # padded so every process runs the same steps
    assert set(np.concatenate(parts)) == set(idx)
    assert len(np.concatenate(parts)) - len(set(np.concatenate(parts))) == 1  # the one wrap-around item
    again = [shard(idx, DistContext(r, 3, r), epoch=2, seed=5) for r in range(3)]
    assert all((a == b).all() for a, b in zip(parts, again))  # every process computes the same shuffle
    other = shard(idx, DistContext(0, 3, 0), epoch=3, seed=5)
    assert not (other == parts[0]).all()  # a new order every epoch
    assert sorted(shard(idx, DistContext(), epoch=0, seed=0)) == list(idx)


def _torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "torch.distributed.run"]


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="this torch build has no gloo backend")
def test_cellclass_train_under_torchrun_with_two_cpu_processes(tmp_path):
    from napari_cellclass import load_model, predict
    from napari_cellclass.core.synth import write_dataset

    data = tmp_path / "data"
    write_dataset("brightfield", data, 24, seed=3, size=(48, 48))
    out = tmp_path / "ddp.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [*_torchrun(), "--standalone", "--nproc_per_node", "2", "-m", "napari_cellclass.cli", "train", str(data),
           "--arch", "scaffoldnet", "--epochs", "2", "--batch-size", "4", "--input-size", "48",
           "--val-fraction", "0.25", "--device", "cpu", "--seed", "1", "--no-progress", "--out", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    bundle = load_model(out)
    training = bundle.provenance["training"]
    assert training["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert training["epochs_run"] == 2
    assert training["data"]["n_train"] == 18  # each process saw its half of these per epoch
    probs = predict(bundle, np.zeros((48, 48), np.float32))
    assert probs.shape == (1, 2) and np.isfinite(probs).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "ddp.safetensors"]  # nothing half-written beside it
    shutil.rmtree(data)


def _rank_main(rank: int, world: int, port: int, out: str) -> None:
    """One process of a two-process job, as torchrun would set it up."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    from napari_cellclass.core.training.distributed import context, teardown
    from napari_cellclass.core.synth import generate
    from napari_cellclass.core.training.api import fit

    s = generate("brightfield", 16, seed=2, size=(32, 32))
    items = [(img, lab, f"i{i}") for i, (img, lab) in enumerate(zip(s.images, s.labels))]
    bundle = fit("scaffoldnet", items, classes=s.classes, epochs=1, batch_size=4, input_size=(32, 32),
                 val_fraction=0.25, device="cpu", seed=0, augment={"hflip": True, "intensity_jitter": 0.2})
    torch.save({k: v.clone() for k, v in bundle.network.state_dict().items()}, f"{out}/rank{rank}.pt")
    teardown(context())


def test_ddp_processes_see_different_data_but_end_with_the_same_weights(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_rank_main, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))  # our own files, written above
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), f"{k} differs: gradients were not averaged"
