"""Network-ready tensors, made once per image and kept for every epoch.

Each image is read, brought to the model's channel count and preprocessed
(resize + normalisation, exactly ``Preprocess.prepare_batch`` as at inference) a
single time; the result lives in one (N, C, h, w) float32 tensor on the training
device when it fits (else in CPU memory, moved batch by batch).  The tensor is
cached in the data set's shared store, keyed by the recipe, so validation splits,
k-fold runs and learning curves over the same data set preprocess nothing twice.
Reading runs in a background thread while the previous image is preprocessed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..errors import Cancelled
from ..io.images import match_channels
from ..io.preprocess import Preprocess
from .dataset import Dataset

GPU_SHARE = 0.25  # at most this share of free GPU memory holds the cached inputs


def _fits_on(device: torch.device, nbytes: int) -> bool:
    if device.type != "cuda":
        return True
    try:
        free, _ = torch.cuda.mem_get_info(device)
    except RuntimeError:
        return False
    return nbytes <= GPU_SHARE * free


def cached_inputs(ds: Dataset, preprocess: Preprocess, in_chans: int, device: torch.device,
                  stop: Callable[[], bool] | None = None,
                  progress: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """``(X, rows)``: the store-wide input tensor and this data set's rows in it.

    ``X[rows[i]]`` is what the network sees for ``ds[i]``. ``stop()`` returning True
    raises :class:`Cancelled`.
    """
    from ..io.prefetch import prefetch

    store = ds.store
    key = ("inputs", preprocess, int(in_chans), str(device))
    entry = store.tensors.get(key)
    n_store = len(store.sources)
    h, w = preprocess.input_size
    if entry is None:
        nbytes = n_store * in_chans * h * w * 4
        where = device if _fits_on(device, nbytes) else torch.device("cpu")
        x = torch.zeros((n_store, in_chans, h, w), dtype=torch.float32, device=where)
        if where.type == "cpu" and device.type == "cuda":
            x = x.pin_memory()
        entry = store.tensors[key] = {"x": x, "done": np.zeros(n_store, bool)}
    rows = ds.indices
    todo = [int(j) for j in np.unique(rows) if not entry["done"][j]]
    x = entry["x"]
    work_dev = device  # preprocess where the training runs (GPU resizes are cheap)
    for n_done, (j, (plane, vmax)) in enumerate(prefetch(((j, store.raw(j)) for j in todo), 8), start=1):
        if stop is not None and stop():
            raise Cancelled("training")
        plane = match_channels(plane, in_chans, None, store.names[j])
        plane = np.ascontiguousarray(plane)
        t = torch.from_numpy(plane if plane.flags.writeable else plane.copy()).to(work_dev)
        vm = torch.tensor([np.nan if vmax is None else vmax], dtype=torch.float32, device=work_dev)
        out, _ = preprocess.prepare_batch(t[None], vm)
        x[j] = out[0].to(x.device)
        entry["done"][j] = True
        if progress is not None:
            progress(n_done, len(todo))
    return x, rows

