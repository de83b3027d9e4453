"""Recipe options around the training loop: data fingerprint, held-out test split,
preset fold count, training-set mean subtraction (tiny CPU problems, 32 px)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cellclass.core.presets.factory import build_model
from napari_cellclass.core.models.modelfile import load_model, save_model
from napari_cellclass.core.data import load_dataset
from napari_cellclass.core.data.fingerprint import data_fingerprint
from napari_cellclass.core.training.api import fit
from test_train import _items  # the same easy dim-vs-bright task

CLASSES = ["dim", "bright"]
KW = dict(classes=CLASSES, channel_axis=0, input_size=(32, 32), pretrained=False, device="cpu", batch_size=4)




def _fp(items):
    return data_fingerprint(load_dataset(items, CLASSES, channel_axis=0))


# ------------------------------------------------------------------ 1. fingerprint
def test_fingerprint_follows_pixels_and_labels_not_order():
    items = _items(6)
    same = _fp(items)
    assert same.startswith("sha256:") and _fp(_items(6)) == same
    assert _fp(list(reversed(items))) == same  # item order is not part of the data
    pixel = [(a.copy(), lab, n) for a, lab, n in items]
    pixel[3][0][0, 5, 7] ^= 1
    assert _fp(pixel) != same
    label = list(items)
    label[2] = (items[2][0], [1 - items[2][1][0]], items[2][2])
    assert _fp(label) != same
    dtype = [(a.astype(np.uint16), lab, n) for a, lab, n in items]
    assert _fp(dtype) != same


def test_training_records_the_fingerprint_and_the_card_shows_it(tmp_path):
    items = _items(8)
    b = fit("senescence_cnn", items, epochs=1, val_fraction=0.25, **KW)
    fp = b.provenance["training"]["data"]["fingerprint"]
    assert fp == _fp(items)
    path = save_model(b, tmp_path / "m.safetensors")
    assert f"training data fingerprint: {fp}" in load_model(path).card()


# ------------------------------------------------------------------ 2. held-out test split
def test_test_fraction_holds_out_a_scored_stratified_split():
    from napari_cellclass.core.evaluation.evaluate import evaluate

    items = _items(20)
    b = fit("senescence_cnn", items, epochs=1, val_fraction=0.2, test_fraction=0.2, **KW)
    data = b.provenance["training"]["data"]
    assert (data["n_train"], data["n_val"], data["n_test"]) == (12, 4, 4)
    assert data["test_class_counts"] == [2, 2] and data["class_counts"] == [6, 6]
    test_names = data["test_names"]
    assert len(set(test_names)) == 4
    test = b.provenance["metrics"]["test"]
    assert test["n_images"] == 4 and "accuracy" in test and "confusion_matrix" in test
    # the stored metrics are the final model's on exactly those images
    again = evaluate(b, load_dataset([it for it in items if it[2] in test_names], CLASSES, channel_axis=0), device="cpu")
    assert again["accuracy"] == pytest.approx(test["accuracy"])
    assert np.asarray(again["confusion_matrix"]).tolist() == test["confusion_matrix"]
    assert "held-out test (4 images): accuracy" in b.card()
    # the same seed holds out the same images; no test split when the fraction is 0
    b2 = fit("senescence_cnn", items, epochs=1, val_fraction=0.2, test_fraction=0.2, **KW)
    assert b2.provenance["training"]["data"]["test_names"] == test_names
    b3 = fit("senescence_cnn", items, epochs=1, val_fraction=0.2, **KW)
    assert "n_test" not in b3.provenance["training"]["data"] and "metrics" not in b3.provenance


def test_test_split_is_disjoint_from_training_and_validation():
    from napari_cellclass.core.training.prep import hold_out_test, val_share_of_rest

    ds = load_dataset(_items(30), CLASSES, channel_axis=0)
    rest, test = hold_out_test(ds, 0.1, seed=5)
    assert set(rest.names).isdisjoint(test.names) and len(rest) + len(test) == 30
    assert test.class_counts() == [2, 2] or sum(test.class_counts()) == 3
    assert val_share_of_rest(0.1, 0.1) == pytest.approx(0.1 / 0.9)
    from napari_cellclass.core.errors import DataError

    with pytest.raises(DataError, match="nothing to train"):
        val_share_of_rest(0.5, 0.5)


def test_cli_test_fraction_and_folds_default():
    from napari_cellclass.cli import build_parser
    from napari_cellclass.cli._trainopts import train_request
    from napari_cellclass.core.training.options import BuildOptions

    def recipe(args):
        return train_request(args)[1]

    p = build_parser()
    args = p.parse_args(["train", "d", "--arch", "resnet18", "--out", "m.safetensors", "--test-fraction", "0.1"])
    assert recipe(args)["test_fraction"] == 0.1
    args = p.parse_args(["train", "d", "--arch", "resnet18", "--out", "m.safetensors"])
    assert "test_fraction" not in recipe(args) and "freeze_blocks" not in recipe(args)
    assert train_request(args)[0] == BuildOptions()  # nothing given: the architecture's own choices
    args = p.parse_args(["train", "d", "--arch", "resnet18", "--out", "m.safetensors", "--freeze-blocks", "2",
                         "--input-size", "96", "--dropout", "0.3", "--class-balance", "weights"])
    assert recipe(args)["freeze_blocks"] == 2
    assert train_request(args)[0] == BuildOptions(input_size=(96, 96), head={"dropout": 0.3}, class_balance="weights")
    assert p.parse_args(["cv", "d", "--preset", "cell-line-authentication"]).folds is None


def test_cv_folds_default_to_the_recipe_and_preset(tmp_path):
    from napari_cellclass.core.training.crossval import cross_validate, default_folds
    from napari_cellclass.core.presets.studies import PRESETS
    from napari_cellclass.core.presets.recipe import TrainRecipe

    assert PRESETS["cell-line-authentication"].train.cv_folds == 10
    assert default_folds("cell-line-authentication") == 10
    assert default_folds("scaffoldnet", TrainRecipe(cv_folds=4)) == 4
    assert default_folds("scaffoldnet") == 10
    recipe = TrainRecipe(epochs=1, batch_size=4, val_fraction=0.25, cv_folds=3, test_fraction=0.5)
    res = cross_validate("senescence_cnn", load_dataset(_items(12), CLASSES, channel_axis=0), device="cpu",
                         recipe=recipe, input_size=(32, 32), pretrained=False)
    assert res["folds"] == 3 and len(res["per_fold"]) == 3
    # the outer fold is the test set: no inner test split eats the fold's training images
    assert all(f["n_train"] == 8 for f in res["per_fold"])


# ------------------------------------------------------------------ 3. training-set mean subtraction
def test_meansub_stores_the_training_sets_channel_means(tmp_path):
    from napari_cellclass.core.inference.predict import predict, preprocess
    from napari_cellclass.core.io.preprocess import Normalization, Preprocess

    items = _items(8, chans=2)
    pre = Preprocess((32, 32), "squash", "bilinear", Normalization("meansub"))
    base = build_model("senescence_cnn", CLASSES, in_chans=2, preprocess=pre)
    b = fit(base, items, epochs=1, val_fraction=0.0, **{k: v for k, v in KW.items() if k not in ("input_size", "pretrained")})
    expected = np.stack([a for a, _, _ in items]).astype(np.float64).mean(axis=(0, 2, 3))
    assert np.allclose(b.preprocess.normalization.mean, expected, rtol=1e-6)
    assert base.preprocess.normalization.mean is None  # the caller's bundle is unchanged
    loaded = load_model(save_model(b, tmp_path / "m.safetensors"))
    assert np.allclose(loaded.preprocess.normalization.mean, expected, rtol=1e-6)
    img = items[0][0]
    # inference subtracts the training set's means, not the image's own
    x = preprocess(loaded, img, channel_axis=0).numpy()
    assert np.allclose(x, img.astype(np.float32) - expected[:, None, None].astype(np.float32), atol=1e-3)
    assert np.allclose(predict(b, img, channel_axis=0, device="cpu"), predict(loaded, img, channel_axis=0, device="cpu"),
                       atol=1e-6)


# ------------------------------------------------------------------ 4. freeze the first N blocks
def _frozen(net):
    return {n for n, p in net.named_parameters() if not p.requires_grad}


@pytest.mark.parametrize("arch, n, frozen_prefixes, trainable_prefixes", [
    ("resnet18", 2, ("backbone.conv1.", "backbone.bn1.", "backbone.layer1.", "backbone.layer2."),
     ("backbone.layer3.", "backbone.layer4.", "head.")),
    ("tf_efficientnetv2_b0", 3, ("backbone.conv_stem.", "backbone.bn1.", "backbone.blocks.0.", "backbone.blocks.1.",
                                 "backbone.blocks.2."),
     ("backbone.blocks.3.", "backbone.blocks.5.", "backbone.conv_head.", "backbone.bn2.", "head.")),
    ("senescence_cnn", 1, ("features.0.",), ("features.3.", "features.6.", "head.")),
])
def test_set_trainable_freezes_stem_and_first_blocks(arch, n, frozen_prefixes, trainable_prefixes):
    from napari_cellclass.core.presets.recipe import Stage
    from napari_cellclass.core.training.optim import set_trainable

    net = build_model(arch, CLASSES, in_chans=3, input_size=(32, 32)).network
    total = sum(p.numel() for p in net.parameters())
    # a block count replaces a fraction (the efficientnet preset has one)
    trainable = set_trainable(net, Stage("all"), 0.9, n)
    assert 0 < trainable < total
    for name, p in net.named_parameters():
        if name.startswith(frozen_prefixes):
            assert not p.requires_grad, name
        elif name.startswith(trainable_prefixes):
            assert p.requires_grad, name
    assert any(n.startswith(frozen_prefixes[-1]) for n in _frozen(net))
    set_trainable(net, Stage("all"), 0.0, 0)
    assert not _frozen(net)


def test_freeze_blocks_in_training_and_errors():
    from napari_cellclass.core.errors import CellclassError
    from napari_cellclass.core.presets.recipe import Stage
    from napari_cellclass.core.training.optim import set_trainable

    base = build_model("senescence_cnn", CLASSES, in_chans=1, input_size=(32, 32))
    before = {k: v.clone() for k, v in base.network.state_dict().items()}
    b = fit(base, _items(8), epochs=2, lr=1e-2, freeze_blocks=2,
            **{k: v for k, v in KW.items() if k not in ("input_size", "pretrained")})
    after = b.network.state_dict()
    assert torch_equal(before["features.0.weight"], after["features.0.weight"])
    assert torch_equal(before["features.3.weight"], after["features.3.weight"])
    assert not torch_equal(before["features.6.weight"], after["features.6.weight"])
    assert b.provenance["training"]["recipe"]["freeze_blocks"] == 2
    with pytest.raises(CellclassError, match="has 3 blocks"):
        set_trainable(base.network, Stage("all"), 0.0, 4)
    with pytest.raises(CellclassError, match="freeze_blocks"):
        fit(base, _items(8), epochs=1, freeze_blocks=-1, **{k: v for k, v in KW.items() if k not in ("input_size", "pretrained")})


def torch_equal(a, b):
    import torch

    return torch.equal(a, b)


# ------------------------------------------------------------------ 5. head options
def test_build_model_head_options_survive_a_round_trip(tmp_path):
    import torch

    from napari_cellclass.core.models.heads import HeadSpec

    head = HeadSpec(pool="max", hidden=(16,), dropout=0.2)
    b = build_model("resnet18", CLASSES, in_chans=3, input_size=(32, 32), head=head)
    assert b.arch.head == head and b.network.pool_kind == "max"
    assert b.network.backbone.global_pool.pool_type == "max"
    linears = [m for m in b.network.head.hidden if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(512, 16)]
    assert isinstance(b.network.head.drop, torch.nn.Dropout) and b.network.head.drop.p == 0.2
    assert b.network.head.fc.in_features == 16
    loaded = load_model(save_model(b, tmp_path / "m.safetensors"))
    assert loaded.arch.head == head and loaded.network.backbone.global_pool.pool_type == "max"
    assert [m.out_features for m in loaded.network.head.hidden if isinstance(m, torch.nn.Linear)] == [16]
    x = torch.rand(2, 3, 32, 32)
    b.network.eval(), loaded.network.eval()
    with torch.no_grad():
        assert torch.allclose(b.network(x), loaded.network(x), atol=1e-5)
    # the default stays the architecture's own head
    assert build_model("resnet18", CLASSES, in_chans=3, input_size=(32, 32)).arch.head == HeadSpec()


def test_train_head_options_lay_over_the_default_head():
    from napari_cellclass.cli import build_parser
    from napari_cellclass.cli._trainopts import train_request
    from napari_cellclass.core.errors import CellclassError
    from napari_cellclass.core.models.backbones.small_cnns import SENESCENCE_CNN_HEAD

    args = build_parser().parse_args(["train", "d", "--arch", "senescence_cnn", "--out", "m.safetensors",
                                      "--pool", "avg", "--hidden", "16,8", "--dropout", "0.1"])
    head = train_request(args)[0].head
    assert head == {"pool": "avg", "hidden": (16, 8), "dropout": 0.1}
    b = fit("senescence_cnn", _items(8), epochs=1, val_fraction=0.0, head=head, **KW)
    assert b.arch.head.pool == "avg" and b.arch.head.hidden == (16, 8) and b.arch.head.dropout == 0.1
    # not given: the architecture's own (hidden dropout 0.5 of the senescence CNN)
    assert b.arch.head.hidden_dropout == SENESCENCE_CNN_HEAD.hidden_dropout
    with pytest.raises(CellclassError, match="new model"):
        fit(b, _items(8), epochs=1, head={"pool": "max"}, **{k: v for k, v in KW.items() if k not in ("input_size", "pretrained")})
    with pytest.raises(CellclassError, match="pool"):
        fit("senescence_cnn", _items(8), epochs=1, head={"pool": "median"}, **KW)


# ------------------------------------------------------------------ 6. optimiser, schedules, smoothing, keep-best
def test_sgd_optimizer_trains_with_momentum():
    import torch

    from napari_cellclass.core.presets.recipe import TrainRecipe
    from napari_cellclass.core.training.optim import make_optimizer

    net = build_model("senescence_cnn", CLASSES, in_chans=1, input_size=(32, 32)).network
    opt = make_optimizer(net, TrainRecipe(optimizer="sgd", weight_decay=1e-4), 0.05)
    assert isinstance(opt, torch.optim.SGD)
    assert opt.param_groups[0]["momentum"] == 0.9 and opt.param_groups[0]["weight_decay"] == 1e-4
    before = {k: v.clone() for k, v in net.state_dict().items()}
    b = fit("senescence_cnn", _items(8), epochs=2, optimizer="sgd", lr=0.05, val_fraction=0.0, **KW)
    assert b.provenance["training"]["recipe"]["optimizer"] == "sgd"
    assert any(not torch.equal(before[k], v) for k, v in b.network.state_dict().items())


def test_cosine_schedule_anneals_to_zero():
    import math

    b = fit("senescence_cnn", _items(8), epochs=4, schedule="cosine", lr=1e-2, val_fraction=0.25, **KW)
    lrs = [h["lr"] for h in b.provenance["training"]["history"]]  # the rate after each epoch's step
    expected = [1e-2 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(1, 5)]
    assert lrs == pytest.approx(expected, abs=1e-6)  # the history keeps 6 decimals


def test_plateau_schedule_divides_the_rate_when_the_loss_stalls():
    # min_delta no epoch can beat: after the first epoch every epoch is a plateau (patience 0)
    b = fit("senescence_cnn", _items(8), epochs=4, schedule="plateau", plateau_patience=0, plateau_factor=0.5,
            min_delta=10.0, lr=1e-2, val_fraction=0.25, **KW)
    lrs = [h["lr"] for h in b.provenance["training"]["history"]]
    assert lrs == pytest.approx([1e-2, 5e-3, 2.5e-3, 1.25e-3])
    # without a schedule the rate stays
    b2 = fit("senescence_cnn", _items(8), epochs=2, lr=1e-2, val_fraction=0.25, **KW)
    assert [h["lr"] for h in b2.provenance["training"]["history"]] == [1e-2, 1e-2]


def test_label_smoothing_in_the_loss():
    import torch
    import torch.nn.functional as F

    from napari_cellclass.core.presets.recipe import TrainRecipe
    from napari_cellclass.core.training.optim import Loss

    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3], [-2.0, 3.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    plain = Loss("softmax", TrainRecipe())(logits, y)
    smooth = Loss("softmax", TrainRecipe(label_smoothing=0.2))(logits, y)
    assert torch.allclose(smooth, F.cross_entropy(logits, y.argmax(1), label_smoothing=0.2))
    assert not torch.allclose(plain, smooth)
    # binary: one logit for the second class, targets pulled towards 0.5
    lb = logits[:, 1:]
    got = Loss("binary", TrainRecipe(label_smoothing=0.2))(lb, y)
    assert torch.allclose(got, F.binary_cross_entropy_with_logits(lb, y[:, 1:] * 0.8 + 0.1))
    b = fit("senescence_cnn", _items(8), epochs=1, label_smoothing=0.1, val_fraction=0.25, **KW)
    assert b.provenance["training"]["recipe"]["label_smoothing"] == 0.1


def test_keep_best_restores_the_best_epochs_weights():
    import torch

    from napari_cellclass.core.inference.predict import predict

    items = _items(12)
    # validation labels are the opposite of training's, so the better the model learns, the worse
    # its validation loss: the best epoch is an early one, never the last
    val = [(a, [1 - lab[0]], f"val{n}") for a, lab, n in _items(6, seed=9)]
    # brightness is the signal here: the training-set policy keeps it (per-image standardisation removes it)
    kw = dict(epochs=4, lr=1e-2, val_data=val, seed=1, normalization="dataset", **KW)

    def val_loss(bundle):
        probs = torch.from_numpy(predict(bundle, [a for a, _, _ in val], channel_axis=0, device="cpu", amp=False)).double()
        y = torch.tensor([lab[0] for _, lab, _ in val])
        return float(-probs[torch.arange(len(val)), y].log().mean())

    b = fit("senescence_cnn", items, keep_best=True, **kw)
    tr = b.provenance["training"]
    hist = tr["history"]
    best = min(hist, key=lambda h: h["val_loss"])
    assert tr["best_epoch"] == best["epoch"] < len(hist)
    assert val_loss(b) == pytest.approx(best["val_loss"], rel=1e-3)
    assert val_loss(b) != pytest.approx(hist[-1]["val_loss"], rel=1e-3)
    # keep_best=False keeps the last epoch's weights instead
    last = fit("senescence_cnn", items, keep_best=False, **kw)
    assert val_loss(last) == pytest.approx(last.provenance["training"]["history"][-1]["val_loss"], rel=1e-3)


def test_a_callers_own_validation_data_skips_the_recipes_test_split():
    from napari_cellclass.core.presets.recipe import TrainRecipe

    items, val = _items(10), _items(4, seed=3)
    recipe = TrainRecipe(epochs=1, batch_size=4, test_fraction=0.2)
    b = fit("senescence_cnn", items, val_data=val, recipe=recipe, **{k: v for k, v in KW.items() if k != "batch_size"})
    assert b.provenance["training"]["data"]["n_train"] == 10 and "metrics" not in b.provenance
    b2 = fit("senescence_cnn", items, val_data=val, recipe=recipe, test_fraction=0.2,
             **{k: v for k, v in KW.items() if k != "batch_size"})
    assert b2.provenance["training"]["data"]["n_test"] == 2 and b2.provenance["training"]["data"]["n_train"] == 8


def test_timm_blocks_come_from_the_models_own_group_matcher():
    """Xception's matcher counts its 12 entry/middle/exit blocks (conv1/conv2 are the stem); the
    structural fallback would count 20 modules.  Layers after the blocks (conv3/conv4) stay trainable."""
    from napari_cellclass.core.errors import CellclassError
    from napari_cellclass.core.presets.recipe import Stage
    from napari_cellclass.core.training.freezing import matcher_groups
    from napari_cellclass.core.training.optim import set_trainable

    net = build_model("legacy_xception", CLASSES, in_chans=3, input_size=(32, 32)).network
    stem, blocks = matcher_groups(net.backbone)
    assert len(blocks) == 12
    set_trainable(net, Stage("all"), 0.0, 12)
    frozen = _frozen(net)
    assert any(n.startswith("backbone.conv1.") for n in frozen) and any(n.startswith("backbone.block12.") for n in frozen)
    assert not any(n.startswith(("backbone.conv3.", "backbone.conv4.", "head.")) for n in frozen)
    with pytest.raises(CellclassError, match="has 12 blocks"):
        set_trainable(net, Stage("all"), 0.0, 13)
    assert matcher_groups(build_model("senescence_cnn", CLASSES, in_chans=1, input_size=(32, 32)).network) is None
