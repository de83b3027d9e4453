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

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from ..data.augment import Augment, draw_turns, make_generator
from ..models.feature_store import (
    AVERAGE,
    FEATURES,
    FeatureStore,
    average_pool,
    row_hashes,
    weights_hash,
)
from ..presets.recipe import TrainRecipe
from .distributed import DistContext
from .loop import LoopData
from .optim import classifiers, set_trainable, stages_of


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
        self.h, self.w = int(h), int(w)
        self.views, index = reachable_views(aug, self.h, self.w)
        self.capped = 0 < n_views < len(self.views)
        if self.capped:
            self.views = self.views[:n_views]
        self.table = torch.zeros(16, dtype=torch.long)  # (hflip + 2 vflip + 4 turns) → view
        for (hf, vf, k), v in index.items():
            self.table[int(hf) + 2 * int(vf) + 4 * k] = v
        total = sum(len(x) for _, x in segments)
        self.compact = torch.full((total,), -1, dtype=torch.long)
        self.compact[used] = torch.arange(len(used))
        self.ids = used  # compact index → store id
        self.feats = torch.zeros((len(used), len(self.views), int(net.head.in_features)), dtype=torch.float32,
                                 device=device)
        self.done = torch.zeros((len(used), len(self.views)), dtype=torch.bool)
        self.hashes: list[str] = [""] * len(used)
        for off, x in segments:
            mine = [(c, int(i) - off) for c, i in enumerate(used.tolist()) if off <= int(i) < off + len(x)]
            got = row_hashes(x, [r for _, r in mine])
            for c, r in mine:
                self.hashes[c] = got[r]
        self.weights = weights_hash(net)
        self.gen = make_generator(seed * 1009 + 17 + 7919 * rank)  # the loop's augmentation stream
        self.chunk = 64  # rows per forward when computing features
        self.computed = self.reused = 0
        self._from_store()

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

    def _from_store(self) -> None:
        """Every (row, view) feature an earlier run left in :data:`FEATURES`."""
        for r in range(len(self.hashes)):
            for v in range(len(self.views)):
                hit = FEATURES.peek(self._key(r, v))
                if hit is not None:
                    self.feats[r, v] = hit.to(self.dev)
                    self.done[r, v] = True
                    self.reused += 1
        FEATURES.count(hits=self.reused)

    def _ensure(self, rows: torch.Tensor, views: torch.Tensor) -> None:
        """Compute the (row, view) features this batch needs and does not have yet.

        On a GPU the forward is padded to a power of two with other pairs still missing (features
        are deterministic, so computing one early changes nothing): few distinct batch shapes, so
        cuDNN's benchmark mode tunes its kernels a few times, not once per step."""
        need = ~self.done[rows, views]
        if not bool(need.any()):
            return
        n_v = len(self.views)
        codes = torch.unique(rows[need] * n_v + views[need])
        size = min(self.chunk, 1 << (len(codes) - 1).bit_length())
        if size > len(codes) and self.dev.type == "cuda":  # cuDNN re-tunes per shape; a CPU forward costs per image
            spare = (~self.done).flatten().nonzero().flatten()
            spare = spare[~torch.isin(spare, codes)][: size - len(codes)]
            codes = torch.cat([codes, spare])
        r_all, v_all = codes // n_v, codes % n_v
        for s in range(0, len(codes), self.chunk):
            r, v = r_all[s:s + self.chunk], v_all[s:s + self.chunk]
            f, avg = self._compute(r, v)
            self.feats[r.to(self.dev), v.to(self.dev)] = f
            self.done[r, v] = True
            for ri, vi, fi, ai in zip(r.tolist(), v.tolist(), f, avg):
                FEATURES.put(self._key(ri, vi), fi)
                if vi == 0:  # the identity view: its average-pooled features serve the OOD fit (training.trust)
                    FEATURES.put((self.hashes[ri], self.weights, AVERAGE), ai)
        self.computed += len(codes)
        FEATURES.count(misses=len(codes))

    def _key(self, r: int, v: int) -> tuple:
        view = self.views[v]
        return self.hashes[r], self.weights, (view.hflip, view.vflip, view.turns)

    @torch.no_grad()
    def _compute(self, rows: torch.Tensor, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(head-pooled, average-pooled) features of each (row, view)."""
        net = self._net[0]
        ids = self.ids[rows]
        xb = None
        for off, x in self.segments:
            sel = (ids >= off) & (ids < off + len(x))
            if bool(sel.any()):
                part = x[(ids[sel] - off).to(x.device)].to(self.dev)
                xb = torch.empty((len(ids), *part.shape[1:]), dtype=part.dtype, device=self.dev) if xb is None else xb
                xb[sel.to(self.dev)] = part
        assert xb is not None
        for v in torch.unique(views).tolist():
            m = (views == v).to(self.dev)
            xb[m] = self.views[v].apply(xb[m])
        was = [(m, m.training) for m in net.modules()]
        net.eval()  # frozen batch norms run in inference mode in training too; nothing else differs (checked)
        try:
            f = net.forward_features(xb)
            return net.pool_features(f).float(), average_pool(f)
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


def cached_probabilities(bundle, items: Sequence[tuple], device: torch.device, compute: bool = False
                         ) -> np.ndarray | None:
    """``bundle``'s probabilities on ``(image, labels)`` items from the identity features a
    head-only run left in :data:`FEATURES` (so the before/after comparison of a live retrain
    costs no backbone pass), or None when the network or (unless ``compute``) any item's feature
    is not there.  With ``compute`` the missing features are computed and stored: the starting
    model's pass over the validation items then gives a head-only run those features."""
    from ..data import load_dataset
    from ..data.tensors import cached_inputs
    from ..device import eval_mode, prepare_network
    from ..models.feature_store import IDENTITY, cacheable, cached_forward
    from ..models.heads import probabilities

    net = bundle.network
    if len(classifiers(net)) != 1 or not items or not cacheable(net):
        return None
    ds = load_dataset([(it[0], list(it[1]), f"item {i}") for i, it in enumerate(items)], list(bundle.classes),
                      channel_axis=0, multi_label=bundle.multilabel)
    x, rows = cached_inputs(ds, bundle.preprocess, bundle.in_chans, device)
    with torch.no_grad():
        if compute:
            prepare_network(net, device)
            with eval_mode(net):
                logits = torch.cat([cached_forward(net, x[torch.as_tensor(rows[s:s + 64], device=x.device)])[0]
                                    for s in range(0, len(rows), 64)])
        else:
            hashes, weights = row_hashes(x, rows), weights_hash(net)
            feats = [FEATURES.peek((hashes[int(r)], weights, IDENTITY)) for r in rows]
            if any(f is None for f in feats):
                return None
            with eval_mode(net.head):
                logits = net.head(torch.stack(feats).to(next(net.head.parameters()).device))  # type: ignore[arg-type]
    # the calibration's temperature, as predict() applies it (1 when none was fitted)
    return probabilities(logits.float() / bundle.temperature, bundle.output).float().cpu().numpy()


__all__ = [
    "FEATURES",
    "CachedHead",
    "FeatureStore",
    "View",
    "cached_probabilities",
    "loop_inputs",
    "reachable_views",
    "row_hashes",
    "weights_hash",
    "why_uncached",
]
