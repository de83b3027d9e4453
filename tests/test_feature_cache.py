"""core.training.feature_cache: head-only training on cached backbone features.

Cached and uncached head-only runs with the same seed must give the same head (the cache
replays the loop's augmentation draws; the only difference is float rounding of
differently batched forwards, so weights agree to 1e-4), and the cache must miss exactly
when the features would change: a new image, changed weights, another input size.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cellclass.core.data.augment import Augment, augment_batch, make_generator
from napari_cellclass.core.training import feature_cache as fc
from napari_cellclass.core.training.api import fit, train
from napari_cellclass.core.training.finetune import (
    FineTuneOptions,
    finetune,
    start_model,
)

TOL = 1e-4  # float rounding of differently batched forwards, after a few Adam steps


def _items(n_per_class: int = 8, size: int = 32, seed: int = 0) -> list[tuple]:
    """Stripes along x vs along y plus noise: orientation-free classes need the backbone's texture."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(2 * n_per_class):
        c = i % 2
        ramp = np.sin(np.arange(size) * rng.uniform(0.5, 1.5))
        img = (ramp[None, :] if c == 0 else ramp[:, None]) * np.ones((size, size))
        img = 0.5 + 0.3 * img + 0.2 * rng.standard_normal((size, size))
        out.append((img[None].astype(np.float32), [c], f"img{i}"))
    return out


def _head_state(bundle) -> dict[str, torch.Tensor]:
    return {k: v for k, v in bundle.network.state_dict().items() if k.startswith("head.")}


def _fit(items, **kw):
    kw = {"epochs": 3, "batch_size": 4, "freeze_fraction": 1.0, "lr": 1e-2, "val_fraction": 0.25,
          "augment": Augment(hflip=True, vflip=True, rot90=True), **kw}
    return fit("senescence_cnn", items, classes=["x", "y"], input_size=(32, 32), pretrained=False, device="cpu",
               channel_axis=0, seed=3, **kw)


@pytest.fixture(autouse=True)
def fresh_store():
    fc.FEATURES.clear()
    yield
    fc.FEATURES.clear()


@pytest.mark.parametrize("augment", [Augment(), Augment(hflip=True, vflip=True, rot90=True)])
def test_cached_and_uncached_head_only_give_the_same_model(augment):
    items = _items()
    cached = _fit(items, augment=augment)
    assert fc.FEATURES.misses > 0  # the cache was used
    uncached = _fit(items, augment=augment, feature_cache=False)
    a, b = _head_state(cached), _head_state(uncached)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=TOL, rtol=0)
    assert cached.provenance["training"]["best_epoch"] == uncached.provenance["training"]["best_epoch"]
    # the backbone did not change (frozen), and the whole network predicts alike
    x = torch.from_numpy(np.stack([it[0] for it in items]))
    with torch.no_grad():
        torch.testing.assert_close(cached.network(x), uncached.network(x), atol=1e-3, rtol=0)


def test_capped_views_train_from_fewer_forward_passes():
    items = _items()
    _fit(items, cache_views=2, epochs=4)
    n = len(items)
    # two views per image at most, and the identity view's average pooling (the OOD fit reads it)
    assert fc.FEATURES.misses <= 2 * n and len(fc.FEATURES) <= 3 * n


def test_views_are_the_symmetries_the_augmentation_reaches():
    views, index = fc.reachable_views(Augment(hflip=True, vflip=True, rot90=True), 8, 8)
    assert len(views) == 8 and views[0] == fc.View(False, False, 0) and len(index) == 16
    assert len(fc.reachable_views(Augment(hflip=True, vflip=True), 8, 8)[0]) == 4
    assert len(fc.reachable_views(Augment(hflip=True, vflip=True, rot90=True), 8, 6)[0]) == 4  # no quarter turns
    assert len(fc.reachable_views(Augment(), 8, 8)[0]) == 1
    # the view a draw maps to is the image augment_batch makes for that draw
    aug = Augment(hflip=True, vflip=True, rot90=True)
    x = torch.arange(2 * 64, dtype=torch.float32).view(2, 1, 8, 8).repeat(20, 1, 1, 1)
    out, _ = augment_batch(x, aug, make_generator(5))
    head = fc.CachedHead.__new__(fc.CachedHead)
    nn_init = torch.nn.Module.__init__
    nn_init(head)
    head.aug, head.h, head.w, head.capped, head.views = aug, 8, 8, False, views
    head.table = torch.zeros(16, dtype=torch.long)
    for (hf, vf, k), v in index.items():
        head.table[int(hf) + 2 * int(vf) + 4 * k] = v
    head.gen = make_generator(5)
    drawn = head._draw(len(x))
    for i in range(len(x)):
        torch.testing.assert_close(views[int(drawn[i])].apply(x[i]), out[i])


def _tune(bundle, items, **kw):
    """Head-only fine-tuning of ``bundle``: its preprocessing (statistics included) stays as it is."""
    kw = {"epochs": 2, "batch_size": 4, "freeze_fraction": 1.0, "lr": 1e-2, "val_fraction": 0.25,
          "augment": Augment(), **kw}
    return fit(bundle, items, classes=["x", "y"], device="cpu", channel_axis=0, seed=4, **kw)


@pytest.fixture
def base():
    """A model whose preprocessing is settled (an --arch run fits intensity statistics on its first data)."""
    bundle = _fit(_items(), epochs=1, augment=Augment())
    fc.FEATURES.clear()
    return bundle


def test_new_label_computes_only_the_new_image(base):
    items = _items()
    _tune(base, items[:-1])
    first = fc.FEATURES.misses
    assert first == len(items) - 1
    _tune(base, items)
    assert fc.FEATURES.misses - first == 1  # only the newly labelled image


def test_changed_label_reuses_features_and_trains_on_the_new_label(base):
    items = _items()
    _tune(base, items)
    misses = fc.FEATURES.misses
    relabelled = [(im, [1 - lb[0]] if i < 4 else lb, name) for i, (im, lb, name) in enumerate(items)]
    cached = _tune(base, relabelled)
    assert fc.FEATURES.misses == misses  # same images: no forward pass
    uncached = _tune(base, relabelled, feature_cache=False)
    for k, v in _head_state(cached).items():
        torch.testing.assert_close(v, _head_state(uncached)[k], atol=TOL, rtol=0)


def test_changed_model_or_input_size_misses(base):
    items = _items()
    n = len(items)
    tuned = _tune(base, items)
    assert fc.FEATURES.misses == n
    _tune(tuned, items)
    assert fc.FEATURES.misses == n  # a head-only run changes only the head: its features are reused
    with torch.no_grad():
        next(p for name, p in tuned.network.named_parameters() if not name.startswith("head.")).add_(0.1)
    _tune(tuned, items)
    assert fc.FEATURES.misses == 2 * n  # changed backbone weights: every image computed again
    from napari_cellclass.core.training.finetune import with_input_size
    from napari_cellclass.core.training.plan import copy_bundle

    _tune(with_input_size(copy_bundle(tuned), (40, 40)), items)
    assert fc.FEATURES.misses == 3 * n  # another input size: other inputs, other features


def test_runs_that_cannot_be_cached_say_why():
    from napari_cellclass.core.presets.recipe import Stage, TrainRecipe
    from napari_cellclass.core.training.distributed import DistContext

    bundle = _fit(_items(3), epochs=1)
    net, ctx = bundle.network, DistContext()
    assert fc.why_uncached(net, TrainRecipe(freeze_fraction=1.0), ctx) is None
    assert fc.why_uncached(net, TrainRecipe(stages=(Stage("head", 1e-3, 1),)), ctx) is None
    assert "outside the head" in fc.why_uncached(net, TrainRecipe(freeze_fraction=0.5), ctx)
    assert "outside the head" in fc.why_uncached(net, TrainRecipe(stages=(Stage("head", 1e-3, 1), Stage("all", 1e-4, 1))), ctx)
    assert "continuous" in fc.why_uncached(net, TrainRecipe(freeze_fraction=1.0, augment=Augment(rotate_deg=10)), ctx)
    assert "off" in fc.why_uncached(net, TrainRecipe(freeze_fraction=1.0, feature_cache=False), ctx)
    assert all(p.requires_grad for p in net.parameters())  # probing the freezing left nothing frozen
    net.features.insert(1, torch.nn.Dropout(0.2))
    assert "random while training" in fc.why_uncached(net, TrainRecipe(freeze_fraction=1.0), ctx)


def test_store_is_bounded_by_bytes_least_recently_used_first():
    store = fc.FeatureStore(budget_bytes=3 * 40)
    for i in range(3):
        store.put((i,), torch.zeros(10))
    assert store.peek((0,)) is not None  # 0 is now the most recent
    store.put((3,), torch.zeros(10))
    assert store.peek((1,)) is None and store.peek((0,)) is not None and len(store) == 3 and store.nbytes == 120
    store.put((4,), torch.zeros(100))  # larger than the whole budget: not kept
    assert store.peek((4,)) is None


def test_finetune_head_only_events_and_cancellation():
    import threading

    items = _items()
    start = start_model("scratch", "senescence_cnn", ["x", "y"], 1, input_size=(32, 32))
    out = finetune(start, items, ["x", "y"], FineTuneOptions(epochs=2, batch_size=4, freeze_fraction=1.0),
                   device="cpu")
    assert out.after is not None and out.before is not None and fc.FEATURES.misses > 0
    stop = threading.Event()
    gen = train(start, items, classes=["x", "y"], epochs=3, batch_size=4, freeze_fraction=1.0, device="cpu",
                channel_axis=0, stop=stop)
    messages = []
    try:
        while True:
            ev = next(gen)
            messages.append(ev.message or "")
            if ev.kind == "step":
                stop.set()
    except StopIteration as done:
        result = done.value
    assert result.cancelled and any("backbone features cached" in m for m in messages)


def test_evaluation_after_a_head_only_run_reads_the_cache_and_agrees_with_predict(base):
    from napari_cellclass.core.inference.predict import predict

    items = _items()
    tuned = _tune(base, items)
    pairs = [(it[0], it[1]) for it in items]
    cached = fc.cached_probabilities(tuned, pairs, torch.device("cpu"))
    assert cached is not None
    full = predict(tuned, [it[0] for it in items], device="cpu", channel_axis=0)
    np.testing.assert_allclose(cached, full, atol=1e-4)
    assert fc.cached_probabilities(tuned, [(_items(1, seed=9)[0][0], [0])], torch.device("cpu")) is None  # unseen
