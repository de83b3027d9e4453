"""The store behind ``training.feature_cache``: feature vectors kept across runs, bounded in
bytes (least recently used first out), and the hashes that key them — of the network-ready
input tensor (image content, preprocessing and input size at once) and of the frozen weights."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

DEFAULT_BUDGET = 512 * 2**20  # bytes of features kept across runs (a 1280-wide view of 50 000 images)
_HASH_ROWS = 64  # rows hashed per device→CPU copy


class FeatureStore:
    """A thread-safe LRU of feature vectors, bounded by their bytes."""

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET) -> None:
        self.budget = int(budget_bytes)
        self._items: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def peek(self, key: tuple) -> torch.Tensor | None:
        """The entry (now the most recently used) or None; counts nothing."""
        with self._lock:
            t = self._items.get(key)
            if t is not None:
                self._items.move_to_end(key)
            return t

    def count(self, hits: int = 0, misses: int = 0) -> None:
        """Book-keeping of the users: features reused (hits) and computed (misses)."""
        with self._lock:
            self.hits += int(hits)
            self.misses += int(misses)

    def put(self, key: tuple, value: torch.Tensor) -> None:
        t = value.detach().to("cpu", torch.float32).contiguous()
        size = t.numel() * 4
        if size > self.budget:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.numel() * 4
            self._items[key] = t
            self._bytes += size
            while self._bytes > self.budget and self._items:
                _, gone = self._items.popitem(last=False)
                self._bytes -= gone.numel() * 4

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
            self.hits = self.misses = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)


#: the store every run shares (live mode retrains from it after each label)
FEATURES = FeatureStore()


# ------------------------------------------------------------------ keys
def weights_hash(net: nn.Module, skip: str = "head.") -> str:
    """Hash of every parameter and buffer outside the head (what the cached features depend on)."""
    h = hashlib.blake2b(type(net).__name__.encode(), digest_size=16)
    for name, t in net.state_dict().items():
        if name.startswith(skip):
            continue
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                 if t.numel() else b"")
    return h.hexdigest()


def row_hashes(x: torch.Tensor, rows: Sequence[int]) -> dict[int, str]:
    """Hash of each network-ready input ``x[row]``: its content, shape and dtype (so the input size)."""
    out: dict[int, str] = {}
    rows = [int(r) for r in rows]
    for s in range(0, len(rows), _HASH_ROWS):
        chunk = rows[s:s + _HASH_ROWS]
        block = x[torch.tensor(chunk, device=x.device)].detach().to("cpu").contiguous()
        for r, t in zip(chunk, block):
            h = hashlib.blake2b(f"{tuple(t.shape)}{t.dtype}".encode(), digest_size=16)
            h.update(t.numpy().tobytes())
            out[r] = h.hexdigest()
    return out


__all__ = ["DEFAULT_BUDGET", "FEATURES", "FeatureStore", "row_hashes", "weights_hash"]
