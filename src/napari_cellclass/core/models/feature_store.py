"""Backbone features kept across runs: the store behind ``training.feature_cache``, bounded in
bytes (least recently used first out), the hashes that key it — of the network-ready input
tensor (image content, preprocessing and input size at once) and of the frozen weights — and
:func:`cached_pooled`, which reads it for any forward of a features → pool → head network.

Training writes it (head-only runs), and prediction reads it inside :func:`reuse_features`
(live mode re-classifies and re-ranks the open images with a new head on the features their
unchanged pixels already have: no backbone pass).  Outside that context prediction runs
the network as before."""

from __future__ import annotations

import contextlib
import hashlib
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Sequence

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


#: the view key of an un-augmented image's head-pooled features, and of its average-pooled ones (OOD)
IDENTITY = (False, False, 0)
AVERAGE = ("avg", False, False, 0)

_memo: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, str]] = weakref.WeakKeyDictionary()
_memo_lock = threading.Lock()


# ------------------------------------------------------------------ keys
_SKIP = "head."


def weights_hash(net: nn.Module, skip: str = _SKIP) -> str:
    """Hash of every parameter and buffer outside the head (what the cached features depend on).

    Remembered per network while no tensor outside the head was replaced or changed in place
    (the tensors' storage and version counters say so): live mode asks after every label."""
    state = [(n, t) for n, t in net.state_dict(keep_vars=True).items() if not n.startswith(skip)]
    try:
        sig = tuple((n, t.data_ptr(), t._version) for n, t in state)
    except RuntimeError:  # inference tensors keep no version counter: hash every time
        sig = None
    with _memo_lock:
        hit = _memo.get(net)
    if sig is not None and skip == _SKIP and hit is not None and hit[0] == sig:
        return hit[1]
    h = hashlib.sha256(type(net).__name__.encode())  # SHA-256: hardware-accelerated, 2.5x blake2b here
    for name, t in state:
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                 if t.numel() else b"")
    if sig is not None and skip == _SKIP:
        with _memo_lock:
            _memo[net] = (sig, h.hexdigest())
    return h.hexdigest()


def copy_network(net: nn.Module) -> nn.Module:
    """A deep copy of ``net`` (``models.clone``), remembering :func:`weights_hash` for the copy when it is known for
    ``net`` (the same tensors' content, so the same hash): live mode copies the session's
    network for every retrain, and hashing 14 MB of weights again costs more than the head's training."""
    from .clone import clone_network

    new = clone_network(net)
    with _memo_lock:
        hit = _memo.get(net)
    if hit is not None:
        state = [(n, t) for n, t in net.state_dict(keep_vars=True).items()]
        try:
            old_sig = tuple((n, t.data_ptr(), t._version) for n, t in state if not n.startswith(_SKIP))
        except RuntimeError:
            return new
        if old_sig == hit[0]:
            try:
                sig = tuple((n, t.data_ptr(), t._version) for n, t in new.state_dict(keep_vars=True).items()
                            if not n.startswith(_SKIP))
            except RuntimeError:
                return new
            with _memo_lock:
                _memo[new] = (sig, hit[1])
    return new


def row_hashes(x: torch.Tensor, rows: Sequence[int]) -> dict[int, str]:
    """Hash of each network-ready input ``x[row]``: its content, shape and dtype (so the input size)."""
    out: dict[int, str] = {}
    rows = [int(r) for r in rows]
    for s in range(0, len(rows), _HASH_ROWS):
        chunk = rows[s:s + _HASH_ROWS]
        block = x[torch.tensor(chunk, device=x.device)].detach().to("cpu").contiguous()
        for r, t in zip(chunk, block):
            h = hashlib.sha256(f"{tuple(t.shape)}{t.dtype}".encode())
            h.update(t.numpy())  # the buffer itself: no copy
            out[r] = h.hexdigest()[:32]
    return out


# ------------------------------------------------------------------ reading it in a forward pass
_local = threading.local()


@contextlib.contextmanager
def reuse_features() -> Iterator[None]:
    """Within this block (in this thread), prediction takes backbone features from :data:`FEATURES`
    when the network's frozen weights and the input tensor have an entry, and stores those it
    computes (``core.inference.predict.run_network``)."""
    before, weights = getattr(_local, "on", False), getattr(_local, "weights", None)
    _local.on = True
    _local.weights = {}  # network id → weights hash: a job holds the bundle's lock, its weights stay put
    try:
        yield
    finally:
        _local.on, _local.weights = before, weights


def reusing() -> bool:
    """Whether :func:`reuse_features` is on in this thread."""
    return bool(getattr(_local, "on", False))


def cacheable(net: nn.Module) -> bool:
    """A single network with the features → pool → linear head split the cache keys by."""
    return (hasattr(net, "forward_features") and hasattr(net, "pool_features") and not getattr(net, "is_fcn", False)
            and isinstance(getattr(net, "head", None), nn.Module) and hasattr(net.head, "in_features")
            and not hasattr(net, "members"))


def cache_tag(device: torch.device, amp: bool = True) -> tuple:
    """Part of a prediction's key: () for a float32 forward, the dtype for a mixed-precision one."""
    from ..device import amp_dtype

    dtype = amp_dtype(device) if amp else None
    return () if dtype is None else ("amp", str(dtype))


def average_pool(f: torch.Tensor) -> torch.Tensor:
    """The average-pooled feature map OOD statistics model (``models.ood.logits_and_pooled``)."""
    return (f.mean(dim=(-2, -1)) if f.ndim == 4 else f.mean(dim=1) if f.ndim == 3 else f).float()


@torch.no_grad()
def cached_pooled(net: nn.Module, x: torch.Tensor, average: bool = False, tag: tuple = ()
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(head-pooled features, average-pooled features or None) of each row of the network-ready
    batch ``x``, in eval mode: read from :data:`FEATURES`, computed for the rows that miss only
    (and stored).  ``tag`` separates features computed another way (mixed precision)."""
    memo = getattr(_local, "weights", None) if reusing() else None
    w = memo.get(id(net)) if memo is not None else None
    if w is None:
        w = weights_hash(net)  # a walk over every module's state: per batch it was 10–25 ms
        if memo is not None:
            memo[id(net)] = w
    hashes = row_hashes(x, range(len(x)))
    keys = [(hashes[i], w, IDENTITY + tag) for i in range(len(x))]
    pooled = [FEATURES.peek(k) for k in keys]
    avg = [FEATURES.peek((k[0], w, AVERAGE + tag)) for k in keys] if average else []
    missing = [i for i in range(len(x)) if pooled[i] is None or (average and avg[i] is None)]
    if missing:
        f = net.forward_features(x[torch.tensor(missing, device=x.device)])
        p, a = net.pool_features(f).float(), average_pool(f)
        for j, i in enumerate(missing):
            pooled[i] = p[j].to("cpu")
            FEATURES.put(keys[i], p[j])
            FEATURES.put((keys[i][0], w, AVERAGE + tag), a[j])
            if average:
                avg[i] = a[j].to("cpu")
    FEATURES.count(hits=len(x) - len(missing), misses=len(missing))
    out = torch.stack(pooled).to(x.device)  # type: ignore[arg-type]
    return out, (torch.stack(avg).to(x.device) if average else None)  # type: ignore[arg-type]


def cached_forward(net: nn.Module, x: torch.Tensor, average: bool = False, tag: tuple = ()
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(logits, average-pooled features or None) of ``x``: the head on :func:`cached_pooled`'s features."""
    pooled, avg = cached_pooled(net, x, average, tag)
    head_dev = next(net.head.parameters()).device
    return net.head(pooled.to(head_dev)), avg


__all__ = [
    "AVERAGE",
    "DEFAULT_BUDGET",
    "FEATURES",
    "IDENTITY",
    "FeatureStore",
    "average_pool",
    "cache_tag",
    "cacheable",
    "cached_forward",
    "cached_pooled",
    "copy_network",
    "reuse_features",
    "reusing",
    "row_hashes",
    "weights_hash",
]
