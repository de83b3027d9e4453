"""Live mode's incremental retrain (app.live, core.models.feature_store) gives what a retrain
from nothing gives: after one more label only that image's backbone features are computed,
the open images are re-classified from their cached features (no backbone pass), and the
head, the predictions and the OOD statistics agree with a run on an empty feature store
with the same seed — to float rounding of differently batched forwards (TOL).  The
pieces that make it cheap stay exact: the remembered weights hash notices any change of
a weight, and the Woodbury form of the Ledoit–Wolf precision is sklearn's."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from napari_cellclass.core.models import feature_store as fs
from napari_cellclass.core.progress import drain

TOL = 1e-4  # as tests/test_feature_cache.py: rounding of differently batched forwards after a few Adam steps
SIZE = 32


def _stack(n: int, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """Stripes along x vs along y plus noise, as single-channel frames of one stack."""
    rng = np.random.default_rng(seed)
    frames, labels = [], []
    for i in range(n):
        c = i % 2
        ramp = np.sin(np.arange(SIZE) * rng.uniform(0.5, 1.5))
        img = (ramp[None, :] if c == 0 else ramp[:, None]) * np.ones((SIZE, SIZE))
        frames.append((0.5 + 0.3 * img + 0.2 * rng.standard_normal((SIZE, SIZE))).astype(np.float32))
        labels.append(c)
    return np.stack(frames), labels


@pytest.fixture(autouse=True)
def fresh_store():
    fs.FEATURES.clear()
    yield
    fs.FEATURES.clear()


@pytest.fixture
def live(tmp_path):
    """A session whose model is a small CNN, an annotation store over a 24-frame stack, and a request for it."""
    from napari_cellclass.app.jobs import Request
    from napari_cellclass.app.layer_data import LayerSource, SourceInfo
    from napari_cellclass.app.live import preview_session
    from napari_cellclass.app.session import Session
    from napari_cellclass.core.annotations import AnnotationStore
    from napari_cellclass.core.training.api import fit

    stack, labels = _stack(24)
    base = fit("senescence_cnn", [(f[None], [c], f"f{i}") for i, (f, c) in enumerate(zip(stack, labels))],
               classes=["x", "y"], input_size=(SIZE, SIZE), pretrained=False, device="cpu", channel_axis=0,
               epochs=1, batch_size=8, seed=1)  # settles the preprocessing (statistics) once
    session = preview_session(Session(), base)
    store = AnnotationStore.open(tmp_path / "ann.json")
    for c in ("x", "y"):
        store.add_class(c)
    key = store.add_image(stack, name="stack", channel_axis="none")
    request = Request(LayerSource(stack, "stack", False),
                      SourceInfo("stack", tuple(stack.shape), False, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)))
    return session, store, key, labels, request


def _retrain(session, store):
    from napari_cellclass.app.live import live_job
    from napari_cellclass.core.training.finetune import FineTuneOptions

    opts = FineTuneOptions(epochs=3, batch_size=4, lr=1e-2, seed=5)  # augment on: the live cache's 2 views
    return drain(live_job(session, store, opts, threading.Event()))


def _classify(session, bundle, request, reuse: bool) -> np.ndarray:
    from napari_cellclass.app.jobs import classify_job
    from napari_cellclass.app.live import preview_session, reusing_features

    job = reusing_features(classify_job) if reuse else classify_job
    outcome = drain(job(preview_session(session, bundle), [request], 8))
    return np.stack([row.probs for row in outcome.table.rows])


def _head(bundle) -> dict[str, torch.Tensor]:
    return {k: v for k, v in bundle.network.state_dict().items() if k.startswith("head.")}


def test_one_more_label_is_incremental_and_equals_a_retrain_from_nothing(live):
    session, store, key, labels, request = live
    for t in range(16):
        store.label_image(key, t, "xy"[labels[t]])
    first = _retrain(session, store)
    _classify(session, first.bundle, request, reuse=True)  # the open frames' features: computed once
    misses = fs.FEATURES.misses

    store.label_image(key, 16, "xy"[labels[16]])  # one more label
    inc = _retrain(session, store)
    assert 0 < fs.FEATURES.misses - misses <= 2  # the new frame's views only (2 cached views at most)
    misses = fs.FEATURES.misses
    probs_inc = _classify(session, inc.bundle, request, reuse=True)
    assert fs.FEATURES.misses == misses  # every open frame re-classified from the cache: no backbone pass

    fs.FEATURES.clear()  # the same labels and seed, nothing cached
    scratch = _retrain(session, store)
    for k, v in _head(inc.bundle).items():
        torch.testing.assert_close(v, _head(scratch.bundle)[k], atol=TOL, rtol=0)
    probs_plain = _classify(session, scratch.bundle, request, reuse=False)  # a plain predict pass
    np.testing.assert_allclose(probs_inc, probs_plain, atol=TOL)
    assert inc.before == scratch.before and inc.after == scratch.after  # the held-out before/after comparison
    assert inc.bundle.ood is not None and scratch.bundle.ood is not None
    np.testing.assert_allclose(inc.bundle.ood.means, scratch.bundle.ood.means, atol=1e-5)
    assert inc.bundle.ood.threshold == pytest.approx(scratch.bundle.ood.threshold, rel=1e-3)


def test_reused_features_give_the_networks_own_predictions_and_ood_scores(live):
    session, store, key, labels, request = live
    for t in range(16):
        store.label_image(key, t, "xy"[labels[t]])
    bundle = _retrain(session, store).bundle
    plain = _classify(session, bundle, request, reuse=False)
    assert len(fs.FEATURES) > 0
    first = _classify(session, bundle, request, reuse=True)  # computes and stores what is missing
    again = _classify(session, bundle, request, reuse=True)  # reads it back
    np.testing.assert_allclose(first, plain, atol=1e-5)
    np.testing.assert_allclose(again, plain, atol=1e-5)
    x = torch.from_numpy(_stack(4, seed=9)[0][:, None])
    x = bundle.preprocess.prepare_batch(x, torch.full((4,), float("nan")))[0]
    from napari_cellclass.core.models.ood import logits_and_pooled

    with torch.no_grad():
        logits, pooled = logits_and_pooled(bundle.network.eval(), x)
        cached_logits, cached_avg = fs.cached_forward(bundle.network, x, average=True)
    torch.testing.assert_close(cached_logits, logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(cached_avg, pooled, atol=1e-5, rtol=0)


def test_remembered_weights_hash_notices_every_change():
    from napari_cellclass.core.presets.factory import build_model

    net = build_model("senescence_cnn", classes=["x", "y"], in_chans=1, input_size=(SIZE, SIZE),
                      pretrained=False).network
    h = fs.weights_hash(net)
    copy = fs.copy_network(net)
    assert fs.weights_hash(copy) == h  # the copy inherits the hash (same tensors' content)
    with torch.no_grad():
        next(p for n, p in copy.named_parameters() if not n.startswith("head.")).add_(1e-3)
    assert fs.weights_hash(copy) != h  # an in-place change of the copy
    assert fs.weights_hash(net) == h  # leaves the original alone
    with torch.no_grad():
        next(p for n, p in net.named_parameters() if n.startswith("head.")).add_(1.0)
    assert fs.weights_hash(net) == h  # the head is not part of it
    state = {k: v.clone() for k, v in copy.state_dict().items()}
    net.load_state_dict(state)
    assert fs.weights_hash(net) == fs.weights_hash(copy) != h  # loaded weights: hashed again
    bn = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    h = fs.weights_hash(bn)
    bn[1].running_mean.add_(1.0)
    assert fs.weights_hash(bn) != h  # buffers (batch-norm statistics) count too


@pytest.mark.parametrize("n,d", [(40, 300), (12, 64), (80, 50)])
def test_woodbury_precision_and_cross_fitted_scores_are_sklearns(n, d):
    from sklearn.covariance import LedoitWolf

    from napari_cellclass.core.models import ood

    rng = np.random.default_rng(n)
    f = ood.unit_rows(torch.from_numpy(rng.normal(size=(n, d)))).numpy()
    y = rng.integers(0, 2, n)
    means, prec = ood._gaussian(f, y, 2)
    ref = LedoitWolf(assume_centered=True).fit(f - ood._means(f, y, 2)[y]).precision_
    np.testing.assert_allclose(prec, ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    h = ood.unit_rows(torch.from_numpy(rng.normal(size=(7, d)))).numpy()
    want = ood.OodStats(means, ref.astype(np.float32), 0.0).score(h)
    np.testing.assert_allclose(ood._fold_scores(f, y, 2, h), want, rtol=1e-4)


def test_epoch_macro_f1_is_sklearns():
    from sklearn.metrics import f1_score

    from napari_cellclass.core.evaluation.thresholds import macro_f1

    rng = np.random.default_rng(3)
    for k, n in [(2, 7), (3, 40), (5, 12), (4, 1)]:
        t, pred = rng.integers(0, k, n), rng.integers(0, max(1, k - 1), n)  # some class never predicted
        want = f1_score(t, pred, average="macro", labels=list(range(k)), zero_division=0)
        assert macro_f1(t, pred, k) == pytest.approx(want, abs=1e-12)


def test_stable_split_keeps_the_proportions_and_barely_moves_when_a_label_comes():
    from napari_cellclass.core.data import stratified_split
    from napari_cellclass.core.data.splits import stable_split

    rng = np.random.default_rng(0)
    labels = [[int(c)] for c in rng.integers(0, 3, 60)]
    keys = [f"stack · frame {i}" for i in range(60)]
    tr, va = stable_split(labels, keys, 0.25, seed=0)
    ref_tr, ref_va = stratified_split(labels, 0.25, seed=0)
    assert len(va) == len(ref_va) and len(tr) == len(ref_tr)  # the same share of each class
    for c in range(3):
        assert sum(labels[i][0] == c for i in va) == sum(labels[i][0] == c for i in ref_va)
    moved = []
    for n in range(20, 60):  # label after label: the earlier items keep their side, but for one at most
        _, v0 = stable_split(labels[:n], keys[:n], 0.25, seed=0)
        _, v1 = stable_split(labels[: n + 1], keys[: n + 1], 0.25, seed=0)
        moved.append(len(set(v0.tolist()) ^ (set(v1.tolist()) - {n})))
    assert max(moved) <= 1
    assert not np.array_equal(stable_split(labels, keys, 0.25, seed=1)[1], va)  # the seed still draws


def test_clone_network_is_the_deep_copy_deepcopy_makes():
    import copy

    from napari_cellclass.core.models.clone import clone_network

    net = torch.nn.Sequential(torch.nn.Conv2d(2, 2, 3, padding=1), torch.nn.BatchNorm2d(2),
                              torch.nn.Conv2d(2, 2, 3, padding=1))
    net[2].weight = net[0].weight  # tied weights stay tied
    net[1].weight.requires_grad_(False)
    calls = []
    net[1].register_forward_hook(lambda *_: calls.append(1))
    net[1].running_mean.add_(0.5)
    clone, ref = clone_network(net), copy.deepcopy(net)
    x = torch.randn(3, 2, 8, 8)
    net.eval(), clone.eval(), ref.eval()
    torch.testing.assert_close(clone(x), ref(x), rtol=0, atol=0)
    assert len(calls) == 2  # the hook came along, as deepcopy copies it
    assert clone[2].weight is clone[0].weight and clone[0].weight is not net[0].weight
    assert not clone[1].weight.requires_grad and isinstance(clone[0].weight, torch.nn.Parameter)
    assert clone.state_dict().keys() == ref.state_dict().keys()
    with torch.no_grad():
        clone[0].weight.add_(1.0)
        clone[1].running_mean.add_(1.0)
    assert not torch.equal(clone[0].weight, net[0].weight)  # independent tensors
    assert torch.equal(net[1].running_mean, ref[1].running_mean)
