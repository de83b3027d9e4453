"""Head-only training on cached backbone features: the frozen part runs once per image and view.

When every stage of a run trains only the head (``freeze_fraction=1.0``, or stages that
are all ``"head"``), each epoch would push the same images through the same frozen
backbone again.  Here the backbone's pooled features are computed once per image and
per augmentation *view* and the head trains on them; the first epoch costs about one
forward pass, the later ones almost nothing.

Views: the flips and quarter turns of ``Augment`` make at most the 8 symmetries of a
square.  The cache replays the loop's own augmentation draws (``data.augment.draw_turns``
with the loop's generator seed) and looks up the feature of the view each draw makes,
computing it the first time it is asked for — so a cached run trains the same model as
an uncached one with the same seed (up to float rounding of differently batched
forwards).  ``TrainRecipe.cache_views = n`` keeps only the first ``n`` views (identity,
flips, half turn, …) drawn uniformly: at most ``n`` forward passes per image, other draws.
Continuous augmentations (rotation by any angle, shifts, zoom, intensity) cannot be
cached as a few views: such runs, partial freezing, FCNs, ensembles, distributed runs and
backbones with train-time randomness (dropout, stochastic depth) train uncached.

The features live in :data:`FEATURES`, a process-wide store bounded in bytes (least
recently used entries go first), keyed by the hash of the network-ready input tensor
(image content *and* preprocessing, input size included), the hash of the frozen
weights, and the view.  So a new label adds only its image's features, a changed label
reuses them (labels are never cached), and a changed model or input size misses.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from ..data.augment import Augment, draw_turns, make_generator
from ..presets.recipe import TrainRecipe
from .distributed import DistContext
from .loop import LoopData
from .optim import classifiers, set_trainable, stages_of

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

    def get(self, key: tuple) -> torch.Tensor | None:
        with self._lock:
            t = self._items.get(key)
            if t is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return t

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


# ------------------------------------------------------------------ views
@dataclass(frozen=True)
class View:
    hflip: bool
    vflip: bool
    turns: int  # quarter turns after the flips, as augment_batch applies them

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        if self.hflip:
            x = x.flip(-1)
        if self.vflip:
            x = x.flip(-2)
        return torch.rot90(x, self.turns, dims=(-2, -1)) if self.turns % 4 else x


def cacheable_augment(aug: Augment) -> bool:
    """Whether ``aug`` draws from a few fixed views only (flips and quarter turns)."""
    return not (aug.rotate_deg or aug.shift or aug.zoom or aug.shear_deg or aug.intensity_jitter)


def reachable_views(aug: Augment, h: int, w: int) -> tuple[list[View], dict[tuple[bool, bool, int], int]]:
    """(the distinct views ``aug`` can make, identity first; each (hflip, vflip, turns) draw → its view)."""
    probe = torch.arange(h * w, dtype=torch.float32).view(1, h, w)  # every pixel distinct: views compare exactly
    ks = (0, 1, 2, 3) if h == w else (0, 2)
    order = sorted(((hf, vf, k) for hf in ((False, True) if aug.hflip else (False,))
                    for vf in ((False, True) if aug.vflip else (False,))
                    for k in (ks if aug.rot90 else (0,))), key=lambda t: (t[2] % 2, t[2], t[0] + t[1], not t[0]))
    views: list[View] = []
    seen: list[torch.Tensor] = []
    index: dict[tuple[bool, bool, int], int] = {}
    for draw in order:
        v = View(*draw)
        img = v.apply(probe)
        match = next((i for i, s in enumerate(seen) if torch.equal(s, img)), None)
        if match is None:
            views.append(v)
            seen.append(img)
            match = len(views) - 1
        index[draw] = match
    return views, index


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


# ------------------------------------------------------------------ the head on cached features
class CachedHead(nn.Module):
    """``net``'s head fed by store row ids: the features of each row's drawn view are looked
    up (computed the first time) and the head runs on them.  Only the head is a sub-module,
    so the loop's optimiser, keep-best snapshots and freezing see exactly what trains."""

    def __init__(self, net: nn.Module, segments: list[tuple[int, torch.Tensor]], used: torch.Tensor,
                 aug: Augment, n_views: int, seed: int, rank: int, device: torch.device) -> None:
        super().__init__()
        self.head = net.head
        self._net = [net]  # a list: the frozen network is not a sub-module
        self.segments = segments  # (first id, store tensor) of the training and validation stores
        self.aug, self.dev = aug, device
        h, w = segments[0][1].shape[-2:]
        self.views, index = reachable_views(aug, int(h), int(w))
        self.capped = 0 < n_views < len(self.views)
        if self.capped:
            self.views = self.views[:n_views]
        self.table = torch.zeros(16, dtype=torch.long)  # (hflip + 2 vflip + 4 turns) → view
        for (hf, vf, k), v in index.items():
            self.table[int(hf) + 2 * int(vf) + 4 * k] = v
        self.h, self.w = int(h), int(w)
        total = sum(len(x) for _, x in segments)
        self.compact = torch.full((total,), -1, dtype=torch.long)
        self.compact[used] = torch.arange(len(used))
        self.ids = used  # compact index → store id
        width = int(net.head.in_features)
        self.feats = torch.zeros((len(used), len(self.views), width), dtype=torch.float32, device=device)
        self.done = torch.zeros((len(used), len(self.views)), dtype=torch.bool)
        self.hashes: dict[int, str] = {}
        for off, x in segments:
            mine = [int(i) - off for i in used.tolist() if off <= int(i) < off + len(x)]
            self.hashes.update({r + off: hsh for r, hsh in row_hashes(x, mine).items()})
        self.weights = weights_hash(net)
        self.gen = make_generator(seed * 1009 + 17 + 7919 * rank)  # the loop's augmentation stream
        self.computed = 0
        self.reused = 0

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = self.compact[ids.reshape(-1).long().cpu()]
        views = self._draw(len(rows)) if self.training else torch.zeros(len(rows), dtype=torch.long)
        self._ensure(rows, views)
        return self.head(self.feats[rows.to(self.dev), views.to(self.dev)])

    def _draw(self, n: int) -> torch.Tensor:
        if self.capped:
            return torch.randint(0, len(self.views), (n,), generator=self.gen)
        hm, vm, k = draw_turns(self.aug, n, self.h, self.w, self.gen)
        code = torch.zeros(n, dtype=torch.long)
        if hm is not None:
            code += hm.long()
        if vm is not None:
            code += 2 * vm.long()
        if k is not None:
            code += 4 * k.long()
        return self.table[code]

    def _ensure(self, rows: torch.Tensor, views: torch.Tensor) -> None:
        """Fill the features of the (row, view) pairs not yet there: from the store, else computed."""
        todo = sorted({(int(r), int(v)) for r, v in zip(rows.tolist(), views.tolist()) if not self.done[r, v]})
        missing: dict[int, list[int]] = {}
        for r, v in todo:
            hit = FEATURES.get(self._key(r, v))
            if hit is not None:
                self.feats[r, v] = hit.to(self.dev)
                self.done[r, v] = True
                self.reused += 1
            else:
                missing.setdefault(v, []).append(r)
        for v, rs in missing.items():
            out = self._compute(rs, self.views[v])
            for r, f in zip(rs, out):
                self.feats[r, v] = f
                self.done[r, v] = True
                FEATURES.put(self._key(r, v), f)
            self.computed += len(rs)

    def _key(self, r: int, v: int) -> tuple:
        view = self.views[v]
        return self.hashes[int(self.ids[r])], self.weights, (view.hflip, view.vflip, view.turns)

    @torch.no_grad()
    def _compute(self, rows: list[int], view: View) -> torch.Tensor:
        net = self._net[0]
        ids = self.ids[torch.tensor(rows)].tolist()
        parts = []
        for off, x in self.segments:
            local = [i - off for i in ids if off <= i < off + len(x)]
            if local:
                parts.append(x[torch.tensor(local, device=x.device)])
        xb = view.apply(torch.cat(parts).to(self.dev))
        was = [(m, m.training) for m in net.modules()]
        net.eval()  # frozen batch norms run in inference mode in training too; nothing else differs (checked)
        try:
            return net.pool_features(net.forward_features(xb)).float()
        finally:
            for m, flag in was:
                m.training = flag


# ------------------------------------------------------------------ when the cache applies
def why_uncached(net: nn.Module, r: TrainRecipe, ctx: DistContext) -> str | None:
    """Why this run cannot train on cached features, or None when it can."""
    from ..errors import CellclassError

    if not r.feature_cache:
        return "the feature cache is off"
    if ctx.active:
        return "a distributed run"
    if len(classifiers(net)) != 1 or getattr(net, "is_fcn", False):
        return "an ensemble or an FCN"
    if not (hasattr(net, "forward_features") and hasattr(net, "pool_features")
            and isinstance(getattr(net, "head", None), nn.Module) and hasattr(net.head, "in_features")):
        return f"{type(net).__name__} has no features → pool → head split"
    if not cacheable_augment(r.augment):
        return "continuous augmentations (rotation, shift, zoom, intensity) are not a few fixed views"
    head = {id(p) for p in net.head.parameters()}
    try:
        for stage in stages_of(r):
            set_trainable(net, stage, r.freeze_fraction, r.freeze_blocks)
            if any(p.requires_grad and id(p) not in head for p in net.parameters()):
                return "layers outside the head train"
    except CellclassError:
        return "the freezing options are invalid (the loop reports it)"
    finally:
        for p in net.parameters():
            p.requires_grad_(True)
    return _train_time_random(net)


def _train_time_random(net: nn.Module) -> str | None:
    """Modules outside the head whose training-mode output is not their inference-mode output."""
    for name, m in net.named_modules():
        if name == "head" or name.startswith("head."):
            continue
        p = m.p if isinstance(m, nn.modules.dropout._DropoutNd) else getattr(m, "drop_prob", 0.0)
        p = max(float(p or 0.0), float(getattr(m, "drop_rate", 0.0) or 0.0))  # timm's functional dropout
        if p > 0:
            return f"{name} ({type(m).__name__}) is random while training"
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(True for _ in m.parameters(recurse=False)):
            return f"{name} normalises with batch statistics while training"
    return None


def loop_inputs(net: nn.Module, r: TrainRecipe, data: LoopData, dev: torch.device, seed: int,
                ctx: DistContext) -> tuple[nn.Module, TrainRecipe, LoopData, str]:
    """(network, recipe, data, note) for ``run_loop``: the cached head with row ids when the run
    is head-only and cacheable, else ``net``, ``r`` and ``data`` unchanged with the reason."""
    reason = why_uncached(net, r, ctx)
    if reason is not None:
        return net, r, data, f"uncached: {reason}"
    n_x = len(data.x)
    same = data.x_val is data.x
    segments = [(0, data.x)] + ([] if same else [(n_x, data.x_val)])
    used = torch.unique(torch.cat([data.train_rows.long(), data.val_rows.long() + (0 if same else n_x)]))
    n_views = len(reachable_views(r.augment, *data.x.shape[-2:])[0])
    if r.cache_views > 0:
        n_views = min(n_views, r.cache_views)
    if len(used) * n_views * int(net.head.in_features) * 4 > 2 * FEATURES.budget:
        return net, r, data, "uncached: too many features to hold"
    head_net = CachedHead(net, segments, used, r.augment, r.cache_views, seed, ctx.rank, dev)
    ids = torch.arange(n_x + (0 if same else len(data.x_val)), dtype=torch.float32).view(-1, 1, 1, 1)
    cached = replace(data, x=ids[:n_x], x_val=ids[:n_x] if same else ids[n_x:])
    # the loop must neither augment nor freeze: the cached head replays the draws and is all head
    plain = replace(r, augment=Augment(), freeze_fraction=0.0, freeze_blocks=None)
    return head_net, plain, cached, f"cached: {len(head_net.views)} view(s) of {len(used)} images"


__all__ = [
    "FEATURES",
    "CachedHead",
    "FeatureStore",
    "View",
    "loop_inputs",
    "reachable_views",
    "row_hashes",
    "weights_hash",
    "why_uncached",
]
