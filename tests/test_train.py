"""core.train: the loop's behaviours on tiny CPU problems (32 px, a few images, 1-3 epochs)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from napari_cellclass.core.presets.factory import build_model
from napari_cellclass.core.models.modelfile import load_model, save_model
from napari_cellclass.core.inference.predict import predict
from napari_cellclass.core.presets.recipe import Stage
from napari_cellclass.core.training.api import fit, train

CLASSES = ["dim", "bright"]


def _items(n=16, seed=0, size=32, chans=1):
    """An easy task: dim vs bright noise images, (C, H, W) uint8."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        k = i % 2
        lo, hi = (0, 90) if k == 0 else (140, 255)
        out.append((rng.integers(lo, hi, (chans, size, size)).astype(np.uint8), [k], f"img{i}"))
    return out


KW = dict(classes=CLASSES, channel_axis=0, input_size=(32, 32), pretrained=False, device="cpu", batch_size=4)


def _run(gen):
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as done:
            return events, done.value


def _state(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def test_loss_decreases_and_events_are_reported():
    events, res = _run(train("senescence_cnn", _items(24), epochs=6, lr=3e-3, val_fraction=0.25, **KW))
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("epoch") == 6
    steps = [e for e in events if e.kind == "step"]
    assert steps[-1].step == steps[-1].steps == 6 * 5 and all(e.eta_s is not None for e in steps)
    hist = res.history
    assert [h["epoch"] for h in hist] == list(range(1, 7))
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert {"val_accuracy", "val_macro_f1"} <= set(hist[0]) and hist[0]["val_loss"] is not None
    tr = res.bundle.provenance["training"]
    assert tr["epochs_run"] == 6 and tr["data"]["n_train"] == 18 and tr["data"]["n_val"] == 6
    assert tr["data"]["class_counts"] == [9, 9] and tr["recipe"]["lr"] == 3e-3
    assert tr["best_epoch"] == min(hist, key=lambda h: h["val_loss"])["epoch"]
    assert not res.cancelled and not res.stopped_early


def test_cancel_mid_epoch_keeps_a_loadable_model(tmp_path):
    stop = threading.Event()
    gen = train("senescence_cnn", _items(16), epochs=3, stop=stop, val_fraction=0.0, **KW)
    events = []
    while True:
        try:
            ev = next(gen)
        except StopIteration as done:
            res = done.value
            break
        events.append(ev)
        if ev.kind == "step" and ev.step == 2:
            stop.set()  # in the middle of the first epoch
    assert events[-1].kind == "cancelled" and "best model so far" in events[-1].message
    assert max(e.step for e in events) == 2
    assert res.cancelled and res.bundle.provenance["training"]["epochs_run"] == 0
    path = save_model(res.bundle, tmp_path / "partial.safetensors")
    again = load_model(path)
    probs = predict(again, [it[0] for it in _items(3)], channel_axis=0)
    assert probs.shape == (3, 2) and np.isfinite(probs).all()


def test_early_stopping_triggers():
    # a min_delta no epoch can beat: patience 1 stops after the second epoch
    _, res = _run(train("senescence_cnn", _items(12), epochs=20, early_stopping_patience=1, min_delta=10.0, **KW))
    assert res.stopped_early and len(res.history) == 2
    assert res.bundle.provenance["training"]["stopped_early"] is True


def test_head_stage_and_freeze_fraction_really_freeze():
    base = build_model("senescence_cnn", CLASSES, in_chans=1, input_size=(32, 32))
    before = _state(base.network)
    b = fit(base, _items(8), epochs=2, stages=[Stage("head", 1e-2)], **{k: v for k, v in KW.items() if k not in ("input_size", "pretrained")})
    after = b.network.state_dict()
    for k in before:
        changed = not torch.equal(before[k], after[k])
        assert changed == k.startswith("head."), k
    for name, p in b.network.named_parameters():
        assert p.requires_grad  # the returned model is not left frozen (Grad-CAM needs gradients)
        if not name.startswith("head."):
            assert p.grad is None, name
    # freeze_fraction: the leading conv layers keep their weights, the later ones learn
    b2 = fit(base, _items(8), epochs=2, freeze_fraction=0.5, lr=1e-2,
             **{k: v for k, v in KW.items() if k not in ("input_size", "pretrained")})
    a2 = b2.network.state_dict()
    # 3 body convs: half of them (rounded) = the first 2 are frozen, the third learns
    assert torch.equal(before["features.0.weight"], a2["features.0.weight"])
    assert torch.equal(before["features.3.weight"], a2["features.3.weight"])
    assert not torch.equal(before["features.6.weight"], a2["features.6.weight"])
    assert not torch.equal(before["head.fc.weight"], a2["head.fc.weight"])
    # the input bundle never changed
    for k, v in base.network.state_dict().items():
        assert torch.equal(before[k], v)


def test_two_stage_transfer_runs_both_stages():
    events, res = _run(train("senescence_cnn", _items(8), epochs=1, val_fraction=0.0,
                             stages=[{"trainable": "head", "lr": 5e-4}, {"trainable": "all", "lr": 2e-5}], **KW))
    assert [e.message.split(":")[0] for e in events if e.kind == "stage"] == ["stage 1/2", "stage 2/2"]
    assert [h["stage"] for h in res.history] == [1, 2] and [h["lr"] for h in res.history] == [5e-4, 2e-5]


def test_same_seed_same_weights():
    kw = dict(epochs=2, val_fraction=0.25, augment={"hflip": True, "rotate_deg": 10}, **KW)
    a = fit("senescence_cnn", _items(12), seed=3, **kw).network.state_dict()
    b = fit("senescence_cnn", _items(12), seed=3, **kw).network.state_dict()
    c = fit("senescence_cnn", _items(12), seed=4, **kw).network.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_multilabel_thresholds_are_stored(tmp_path):
    from napari_cellclass.core.synth import generate

    s = generate("protein", 10, seed=0, size=(32, 32), classes=["nucleus", "ER", "Golgi"])
    items = [(im, lab, f"p{i}") for i, (im, lab) in enumerate(zip(s.images, s.labels))]
    b = fit("protein_cnn", items, classes=s.classes, channel_axis=0, epochs=1, batch_size=4, input_size=(32, 32),
            device="cpu", val_fraction=0.2)
    assert b.multilabel and len(b.thresholds) == 3
    assert all(0.0 < t < 1.0 and round(t * 100) == pytest.approx(t * 100) for t in b.thresholds)
    assert load_model(save_model(b, tmp_path / "m.safetensors")).thresholds == b.thresholds


def test_fcn_target_is_at_the_blob():
    from napari_cellclass.core.training import fcn_targets as fcn

    chan = torch.zeros(1, 1, 64, 64)
    chan[0, 0, 40:48, 8:16] = 200.0
    m = fcn.channel_mask(chan, fcn.target_spec(None))
    ys, xs = torch.nonzero(m[0, 0], as_tuple=True)
    assert 36 <= ys.min() and ys.max() <= 51 and 4 <= xs.min() and xs.max() <= 19  # the blob, dilated by 2
    grid = fcn.to_grid(m, (8, 8))
    assert grid[0, 0, 5, 1] == 1 and grid[0, 0, 4:7, 0:3].sum() == grid.sum()  # only cells the blob touches
    t = fcn.targets(grid, torch.tensor([[1.0, 0.0, 1.0]]))
    assert t.shape == (1, 3, 8, 8) and torch.equal(t[0, 0], grid[0, 0]) and t[0, 1].sum() == 0


def test_fcn_trains_on_heat_maps():
    from napari_cellclass.core.synth import generate

    s = generate("protein", 8, seed=1, size=(64, 64), classes=["nucleus", "ER"])
    items = [(im, lab, f"p{i}") for i, (im, lab) in enumerate(zip(s.images, s.labels))]
    _, res = _run(train("protein-localization-fcn", items, classes=s.classes, channel_axis=0, epochs=1, batch_size=4,
                        input_size=(64, 64), device="cpu", val_fraction=0.25))
    assert res.bundle.is_fcn and res.history[0]["val_loss"] is not None
    assert res.bundle.provenance["training"]["recipe"]["fcn_target"]["threshold"] == 0.3


def _painted(region, n=4, seed=3):
    """4-channel 64 px planes with class "nucleus" painted in ``region`` (no image labels)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        m = np.zeros((64, 64), np.uint8)
        m[region] = 1
        out.append((rng.integers(0, 255, (4, 64, 64)).astype(np.uint8), [], f"p{i}", m))
    return out


def _fcn_targets_used(items, monkeypatch):
    """Train the FCN preset one step on ``items``; return the grid targets the loss saw, and the loss."""
    from napari_cellclass.core.training import fcn_targets as fcn

    seen = []
    real = fcn.to_grid
    monkeypatch.setattr(fcn, "to_grid", lambda m, grid: seen.append(real(m, grid)) or seen[-1])
    _, res = _run(train("protein-localization-fcn", items, classes=["nucleus", "ER"], channel_axis=0, epochs=1,
                        batch_size=4, input_size=(64, 64), device="cpu", val_fraction=0.0, test_fraction=0.0, augment={},
                        multi_label=True))
    return seen[0], res.history[0]["loss"]


def test_painted_masks_are_the_fcn_targets(monkeypatch):
    top = (slice(0, 16), slice(0, 64))
    left = (slice(0, 64), slice(0, 16))
    t_top, loss_top = _fcn_targets_used(_painted(top), monkeypatch)
    t_left, loss_left = _fcn_targets_used(_painted(left), monkeypatch)
    assert t_top.shape == (4, 2, 4, 4)  # the FCN's 16x reduction of 64 px
    # nucleus is the painted region (16 px = one grid row / column), ER (never painted) is empty
    assert torch.equal(t_top[:, 0].sum(0), torch.tensor([[4.0] * 4] + [[0.0] * 4] * 3))
    assert torch.equal(t_left[:, 0].sum(0), torch.tensor([[4.0, 0.0, 0.0, 0.0]] * 4))
    assert t_top[:, 1].sum() == 0 and t_left[:, 1].sum() == 0
    assert loss_top != loss_left
    # the same planes without the paint: the fluorescence-derived target of the image label
    unpainted = [(im, [0], name) for im, _, name, _ in _painted(top)]
    t_fluor, loss_fluor = _fcn_targets_used(unpainted, monkeypatch)
    assert not torch.equal(t_fluor, t_top) and t_fluor[:, 0].sum() > t_top[:, 0].sum() and loss_fluor != loss_top


def test_a_painted_plane_mixes_with_fluorescence_targets(monkeypatch):
    painted = _painted((slice(0, 16), slice(0, 16)), n=2)
    plain = [(im, [1], f"u{i}") for i, (im, _, _, _) in enumerate(_painted((slice(0, 1), slice(0, 1)), n=2, seed=9))]
    t, _ = _fcn_targets_used(painted + plain, monkeypatch)
    per_item = t.sum(dim=(2, 3))  # (4 in the loop's shuffled order, 2 classes)
    assert sorted(per_item[:, 0].tolist()) == [0.0, 0.0, 1.0, 1.0]  # painted: one grid cell of nucleus
    assert (per_item[per_item[:, 0] == 0, 1] > 0).all()  # unpainted ER images: their fluorescence map


def test_a_mask_of_the_wrong_shape_names_the_sample():
    from napari_cellclass.core.errors import CellclassError

    items = _painted((slice(0, 16), slice(0, 16)))
    items[2] = (items[2][0], [], "odd one", np.zeros((32, 64), np.uint8))
    with pytest.raises(CellclassError, match=r"odd one.*\(32, 64\)"):
        _run(train("protein-localization-fcn", items, classes=["nucleus", "ER"], channel_axis=0, epochs=1,
                   batch_size=4, input_size=(64, 64), device="cpu", val_fraction=0.0, multi_label=True))
    items[2] = (items[2][0], [], "odd one", np.full((64, 64), 7, np.uint8))
    with pytest.raises(CellclassError, match=r"odd one.*0\.\.2"):
        _run(train("protein-localization-fcn", items, classes=["nucleus", "ER"], channel_axis=0, epochs=1,
                   batch_size=4, input_size=(64, 64), device="cpu", val_fraction=0.0, multi_label=True))


def test_painted_classes_label_image_level_models():
    items = [(im, [], name, m) for im, _, name, m in _painted((slice(0, 8), slice(0, 8)), n=2)]
    items += [(items[0][0], [], "er", np.full((64, 64), 2, np.uint8)), (items[1][0], [], "er2", np.full((64, 64), 2, np.uint8))]
    from napari_cellclass.core.data import load_dataset

    ds = load_dataset(items, ["nucleus", "ER"], channel_axis=0)
    assert ds.labels == [[0], [0], [1], [1]] and not ds.multilabel
    b = fit("senescence_cnn", items, classes=["nucleus", "ER"], channel_axis=0, epochs=1, batch_size=2,
            input_size=(32, 32), pretrained=False, device="cpu", val_fraction=0.5)
    assert b.provenance["training"]["data"]["class_counts"] == [1, 1]


def test_ensemble_members_are_all_trained():
    base = build_model(["senescence_cnn", "scaffoldnet"], CLASSES, in_chans=1, input_size=(32, 32))
    before = _state(base.network)
    b = fit(base, _items(8), epochs=1, separate_member_augmentation=True, augment={"hflip": True}, lr=1e-2,
            **{k: v for k, v in KW.items() if k not in ("input_size", "pretrained")})
    after = b.network.state_dict()
    for m in range(2):
        keys = [k for k in before if k.startswith(f"members.{m}.")]
        assert any(not torch.equal(before[k], after[k]) for k in keys), f"member {m} did not learn"


def test_resume_from_a_model_file_and_new_classes(tmp_path):
    first = fit("senescence_cnn", _items(8), epochs=1, **KW)
    path = save_model(first, tmp_path / "first.safetensors")
    _, res = _run(train(str(path), _items(8, seed=1), classes=CLASSES, channel_axis=0, epochs=1, device="cpu",
                        batch_size=4))
    tr = res.bundle.provenance["training"]
    assert tr["started_from"] == f"model file {path}" and res.bundle.classes == CLASSES
    assert any(not torch.equal(v, res.bundle.network.state_dict()[k]) for k, v in first.network.state_dict().items())
    # other classes: a new head, the body continues
    items3 = [(im, [i % 3], n) for i, (im, _, n) in enumerate(_items(9))]
    b3 = fit(first, items3, classes=["a", "b", "c"], channel_axis=0, epochs=1, device="cpu", batch_size=4)
    assert b3.classes == ["a", "b", "c"] and b3.network.num_outputs == 3 and first.network.num_outputs == 2
    assert predict(b3, [items3[0][0]], channel_axis=0).shape == (1, 3)


def test_bad_options_are_explained():
    from napari_cellclass.core.errors import CellclassError

    with pytest.raises(CellclassError, match="unknown training option"):
        fit("senescence_cnn", _items(4), epochs=1, learning_rate=1, **KW)
    with pytest.raises(CellclassError, match="unknown optimizer"):
        fit("senescence_cnn", _items(4), epochs=1, optimizer="lbfgs", **KW)


def test_class_balance_options_and_pos_weight():
    from napari_cellclass.core.synth import generate

    items = _items(10)[:8] + [(_items(2, seed=5)[1][0], [1], "extra")]  # 4 dim, 5 bright
    for mode in ("weights", "sampler"):
        b = fit("senescence_cnn", items, epochs=1, class_balance=mode, **KW)
        assert b.provenance["training"]["class_balance"] == mode
    s = generate("protein", 8, seed=0, size=(32, 32), classes=["nucleus", "ER"])
    items = [(im, lab, f"p{i}") for i, (im, lab) in enumerate(zip(s.images, s.labels))]
    b = fit("protein_cnn", items, classes=s.classes, channel_axis=0, epochs=1, batch_size=4, input_size=(32, 32),
            device="cpu", class_balance="weights")  # BCE with pos_weight
    assert b.multilabel and np.isfinite(b.provenance["training"]["history"][0]["loss"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_amp_training_matches_the_contract(tmp_path):
    events, res = _run(train("resnet18", _items(16, chans=3), classes=CLASSES, channel_axis=0, input_size=(32, 32),
                             device="cuda", epochs=2, batch_size=4, augment={"hflip": True, "rotate_deg": 10}))
    assert res.history[-1]["loss"] == res.history[-1]["loss"]  # finite under autocast (nan != nan)
    assert res.bundle.device.type == "cpu" and res.bundle.provenance["training"]["device"].startswith("cuda")
    assert load_model(save_model(res.bundle, tmp_path / "m.safetensors")).classes == CLASSES


def test_pos_weight_raises_the_loss_of_a_missed_positive():
    from napari_cellclass.core.presets.recipe import TrainRecipe
    from napari_cellclass.core.training.optim import Loss

    logits = torch.tensor([[-2.0, 3.0]])  # class 0: a missed positive; class 1: a false positive
    y = torch.tensor([[1.0, 0.0]])
    plain = Loss("sigmoid", TrainRecipe())(logits, y)
    heavy = Loss("sigmoid", TrainRecipe(), torch.tensor([4.0, 4.0]))(logits, y)
    light = Loss("sigmoid", TrainRecipe(), torch.tensor([0.25, 0.25]))(logits, y)
    assert light < plain < heavy
    # only the positive term is weighted: mean of (4 · missed positive, unweighted negative)
    miss = torch.nn.functional.softplus(torch.tensor(2.0))  # -log σ(-2)
    neg = torch.nn.functional.softplus(torch.tensor(3.0))  # -log(1 - σ(3))
    assert float(heavy) == pytest.approx(float((4 * miss + neg) / 2), rel=1e-5)
    # negatives alone do not feel it
    no_pos = torch.tensor([[0.0, 0.0]])
    assert float(Loss("sigmoid", TrainRecipe(), torch.tensor([4.0, 4.0]))(logits, no_pos)) == pytest.approx(
        float(Loss("sigmoid", TrainRecipe())(logits, no_pos)))
    # binary output: the positive class's weight relative to the negative's
    yb = torch.tensor([[0.0, 1.0]])
    lb = torch.tensor([[-1.0]])
    assert Loss("binary", TrainRecipe(), torch.tensor([1.0, 3.0]))(lb, yb) > Loss("binary", TrainRecipe())(lb, yb)


def test_class_balance_weights_hands_negatives_over_positives_to_the_loss(monkeypatch):
    import napari_cellclass.core.training.api as train_mod
    from napari_cellclass.core.synth import generate
    from napari_cellclass.core.training.optim import Loss

    seen = []

    def spy(output, r, class_weight=None):
        seen.append((output, None if class_weight is None else class_weight.clone()))
        return Loss(output, r, class_weight)

    monkeypatch.setattr(train_mod, "Loss", spy)
    s = generate("protein", 8, seed=0, size=(32, 32), classes=["nucleus", "ER"])
    items = [(im, lab, f"p{i}") for i, (im, lab) in enumerate(zip(s.images, s.labels))]
    fit("protein_cnn", items, classes=s.classes, channel_axis=0, epochs=1, batch_size=4, input_size=(32, 32),
        device="cpu", class_balance="weights", val_fraction=0.0)
    output, w = seen[-1]
    pos = np.array([[k in lab for k in range(2)] for lab in s.labels], float).sum(0)
    assert output == "sigmoid" and np.allclose(w.numpy(), (8 - pos) / pos)


def _member_inputs(separate: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per training step, the inputs the two ensemble members saw."""
    base = build_model(["senescence_cnn", "scaffoldnet"], CLASSES, in_chans=1, input_size=(32, 32))
    seen: dict[int, list[torch.Tensor]] = {0: [], 1: []}
    for m, member in enumerate(base.network.members):
        member.register_forward_pre_hook(
            lambda mod, args, m=m: seen[m].append(args[0].detach().clone()) if mod.training else None)
    fit(base, _items(8), epochs=1, separate_member_augmentation=separate, val_fraction=0.0,
        augment={"rotate_deg": 30, "intensity_jitter": 0.2}, **{k: v for k, v in KW.items()
                                                                  if k not in ("input_size", "pretrained")})
    assert len(seen[0]) == len(seen[1]) == 2
    return list(zip(seen[0], seen[1]))


def test_ensemble_members_draw_their_own_augmentations():
    for a, b in _member_inputs(separate=True):
        assert a.shape == b.shape and not torch.allclose(a, b), "members saw the same augmented batch"
    for a, b in _member_inputs(separate=False):
        assert torch.equal(a, b), "without separate streams the members share one augmented batch"
