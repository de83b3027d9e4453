"""Fan `cellclass predict` out over a Dask cluster when one machine is not enough.

The client splits the file list into chunks and submits one task per chunk; each
worker process loads the model once (cached by path and modification time) and
returns plain rows, which the client writes as they complete — so the CSV streams,
memory stays bounded on both sides, and an interrupted run resumes like a local one.
Workers read the model and the images by path: use a file system they all see.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import CellclassError

_CACHE: dict[tuple[str, float], Any] = {}
_CACHE_LOCK = threading.Lock()


def _worker_model(model_path: str):
    """The model, loaded once per worker process (and again only if the file changes)."""
    from ..models.modelfile import load_model

    key = (model_path, os.path.getmtime(model_path))
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE.clear()
            _CACHE[key] = load_model(model_path)
        return _CACHE[key]


def predict_chunk(model_path: str, paths: Sequence[str], batch_size: int, device: str,
                  channel_axis: Any, channels: list[int] | None) -> list[dict[str, Any]]:
    """Runs on a worker: predictions for some files as plain, picklable rows."""
    from .predict import predict_records

    bundle = _worker_model(model_path)
    rows = []
    for rec in predict_records(bundle, list(paths), batch_size, device, channel_axis, channels, on_error="skip"):
        rows.append({"index": rec.index, "frame": rec.frame, "probs": rec.probs.tolist(), "error": rec.error,
                     "ood_score": rec.ood_score, "ood": rec.ood, "worker_pid": os.getpid()})
    return rows


def connect(address: str):
    try:
        from distributed import Client
    except ImportError as err:
        raise CellclassError("Dask's distributed scheduler is not installed", "pip install 'napari-cellclass[scale]'") from err
    try:
        return Client(address, timeout="5s")
    except OSError as err:
        raise CellclassError(f"cannot reach the Dask scheduler at {address} ({err})",
                             "check the address (tcp://host:8786) and that the scheduler is running") from err


def dask_predict_rows(client, model_path: str | os.PathLike, paths: Sequence[Path], batch_size: int = 32,
                      device: str = "auto", channel_axis: Any = "auto", channels: list[int] | None = None,
                      chunk: int = 64) -> Iterator[dict[str, Any]]:
    """Yield rows from the cluster as chunks complete (order across chunks may vary)."""
    from distributed import as_completed

    model = str(Path(model_path).resolve())
    names = [str(p) for p in paths]
    absolute = [str(Path(p).resolve()) for p in paths]  # workers may run in another directory
    starts = {}
    futures = []
    for i in range(0, len(names), chunk):
        fut = client.submit(predict_chunk, model, absolute[i:i + chunk], batch_size, device, channel_axis, channels, pure=False)
        starts[fut.key] = i
        futures.append(fut)
    try:
        for fut in as_completed(futures):
            for row in fut.result():
                row["name"] = names[starts[fut.key] + row["index"]]
                yield row
    finally:
        client.cancel(futures)
