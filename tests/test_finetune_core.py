"""core.finetune headless: starting models, splits, k-fold, provenance, bad options."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cellclass.core.annotations import AnnotationStore, training_samples
from napari_cellclass.core.errors import DataError
from napari_cellclass.core.training.finetune import (FineTuneOptions, adapt_to_classes, file_sha256, finetune, start_model, with_input_size)


@pytest.fixture
def store(tmp_path):
    """12 dim and 12 bright 32x32 planes, labelled image by image (as keys would)."""
    s = AnnotationStore.open(tmp_path / "ann.json")
    s.add_class("dim"), s.add_class("bright")
    rng = np.random.default_rng(0)
    planes = np.concatenate([rng.integers(0, 60, (12, 32, 32)), rng.integers(150, 255, (12, 32, 32))]).astype(np.uint8)
    k = s.add_image(planes, name="planes", channel_axis="none")
    for t in range(24):
        s.label_image(k, t, "dim" if t < 12 else "bright")
    return s


def items_of(store):
    return [x.as_tuple() for x in training_samples(store)]


def test_start_model_adapts_head_and_input_size(tiny_bundle):
    same = adapt_to_classes(tiny_bundle, ["a", "b", "c"])
    assert same.network is not tiny_bundle.network and same.classes == ["a", "b", "c"]
    x = np.random.default_rng(1).random((2, 3, 32, 32)).astype(np.float32)
    import torch

    with torch.no_grad():
        tiny_bundle.network.eval(), same.network.eval()
        np.testing.assert_allclose(same.network(torch.from_numpy(x)).numpy(), tiny_bundle.network(torch.from_numpy(x)).numpy())
    new = adapt_to_classes(tiny_bundle, ["x", "y"])
    assert new.classes == ["x", "y"] and new.network.num_outputs == 2 and tiny_bundle.network.num_outputs == 3
    assert new.provenance["new_head"]["from_classes"] == ["a", "b", "c"]
    bigger = with_input_size(new, (48, 48))
    assert bigger.input_size == (48, 48) and tiny_bundle.input_size == (32, 32)
    scratch = start_model("scratch", "senescence_cnn", ["x", "y"], 1, input_size=(40, 40))
    assert scratch.in_chans == 1 and scratch.input_size == (40, 40) and scratch.classes == ["x", "y"]
    with pytest.raises(DataError):
        start_model("model", None, ["x"], 3)
    # the new head comes from the seed, not from whatever the global RNG holds
    import torch

    heads = [start_model("model", None, ["x", "y"], 3, bundle=tiny_bundle, seed=5).network.head.fc.weight for _ in range(2)]
    torch.rand(7)
    other = start_model("model", None, ["x", "y"], 3, bundle=tiny_bundle, seed=6).network.head.fc.weight
    assert torch.equal(heads[0], heads[1]) and not torch.equal(heads[0], other)


def test_finetune_split_outcome_and_provenance(store):
    items = items_of(store)
    start = start_model("scratch", "senescence_cnn", store.class_names, 1, input_size=(32, 32))
    out = finetune(start, items, store.class_names, FineTuneOptions(epochs=1, batch_size=8, val_fraction=0.25),
                   device="cpu", annotations=store.path, start_label="scratch")
    assert out.n_train == 18 and out.n_val == 6 and not out.cancelled
    assert out.before["n_images"] == out.after["n_images"] == 6
    ft = out.bundle.provenance["fine_tune"]
    assert ft["annotations_sha256"] == file_sha256(store.path) and ft["class_counts"] == {"dim": 12, "bright": 12}
    assert out.bundle is not start and len(out.history) == 1


def test_k_fold_judges_every_item_once(store):
    items = items_of(store)
    start = start_model("scratch", "senescence_cnn", store.class_names, 1, input_size=(32, 32))
    out = finetune(start, items, store.class_names, FineTuneOptions(epochs=1, batch_size=8, folds=3), device="cpu")
    assert out.folds == 3 and len(out.fold_metrics) == 3
    assert out.after["n_images"] == out.before["n_images"] == 24
    assert {h["fold"] for h in out.history} == {0, 1, 2}


def test_cancel_before_training_and_bad_options(store):
    import threading

    items = items_of(store)
    start = start_model("scratch", "senescence_cnn", store.class_names, 1, input_size=(32, 32))
    stop = threading.Event()
    stop.set()
    with pytest.raises(DataError, match="cancelled"):
        finetune(start, items, store.class_names, FineTuneOptions(epochs=1), stop=stop, device="cpu")
    for bad in (FineTuneOptions(epochs=0), FineTuneOptions(lr=0), FineTuneOptions(folds=1),
                FineTuneOptions(val_fraction=1.0), FineTuneOptions(freeze_fraction=1.5)):
        with pytest.raises(DataError):
            finetune(start, items, store.class_names, bad, device="cpu")
    with pytest.raises(DataError, match="2 classes"):
        finetune(start, [it for it in items if it[1] == [0]], store.class_names, FineTuneOptions(epochs=1), device="cpu")
    with pytest.raises(DataError, match="adapt"):
        finetune(start, items, ["dim", "bright", "other"], FineTuneOptions(epochs=1), device="cpu")


def test_options_map_to_a_training_recipe():
    """two_stage splits the epochs into a head stage and an all-layers stage at lr/10;
    augment is the flips and 90° rotations, or nothing; the panel's options become one typed TrainRecipe."""
    from napari_cellclass.core.data.augment import Augment
    from napari_cellclass.core.presets.recipe import Stage, TrainRecipe

    plain = FineTuneOptions(epochs=5, lr=2e-3, batch_size=8, freeze_fraction=0.5, augment=False).recipe()
    assert isinstance(plain, TrainRecipe)
    assert plain.stages == () and plain.augment == Augment()
    assert [plain.epochs, plain.lr, plain.batch_size, plain.freeze_fraction, plain.keep_best] == [5, 2e-3, 8, 0.5, True]
    two = FineTuneOptions(epochs=5, lr=2e-3, two_stage=True).recipe()
    assert two.stages == (Stage("head", 2e-3, 2), Stage("all", 2e-4, 3))
    assert sum(s.epochs for s in two.stages) == 5
    assert two.augment == Augment(hflip=True, vflip=True, rot90=True)
    assert not (two.augment.rotate_deg or two.augment.zoom or two.augment.shift)  # nothing that resamples
    one = FineTuneOptions(epochs=1, lr=1e-3, two_stage=True).recipe().stages
    assert [(s.trainable, s.epochs) for s in one] == [("head", 1), ("all", 1)]  # each stage at least one epoch
    # laid over the starting model's preset recipe: what the panel does not set stays the preset's
    base = TrainRecipe(optimizer="sgd", weight_decay=0.01, label_smoothing=0.1)
    over = FineTuneOptions(epochs=3).recipe(base)
    assert (over.optimizer, over.weight_decay, over.label_smoothing, over.epochs) == ("sgd", 0.01, 0.1, 3)


def test_finetuning_an_fcn_learns_the_painted_regions(tmp_path, monkeypatch):
    """Painted planes are dense targets: each class's map is trained on its painted region."""
    import torch

    from napari_cellclass.core.training import fcn_targets as fcn

    s = AnnotationStore.open(tmp_path / "px.json", multilabel=True)
    s.add_class("nucleus"), s.add_class("ER")
    rng = np.random.default_rng(0)
    for i in range(4):
        k = s.add_image(rng.integers(0, 255, (4, 64, 64)).astype(np.uint8), name=f"cell{i}", channel_axis=0)
        m = np.zeros((64, 64), np.uint8)
        m[:16, :16] = 1  # nucleus: top-left grid cell
        m[48:, 48:] = 2 if i % 2 else 0  # ER on every second plane: bottom-right cell
        s.set_pixel_labels(k, 0, m)
    items = items_of(s)
    assert all(it[3] is not None for it in items)
    seen = []
    real = fcn.to_grid
    monkeypatch.setattr(fcn, "to_grid", lambda m, grid: seen.append(real(m, grid)) or seen[-1])
    start = start_model("preset", "protein-localization-fcn", s.class_names, 4, multilabel=True, input_size=(64, 64))
    out = finetune(start, items, s.class_names, FineTuneOptions(epochs=1, batch_size=4, augment=False, val_fraction=0.5),
                   device="cpu")
    assert out.bundle.is_fcn and out.n_train == 2 and out.n_val == 2
    first = seen[0]  # the training step's targets: (2 planes, 2 classes, 4x4 grid)
    assert first.shape == (2, 2, 4, 4)
    nucleus = torch.zeros(4, 4)
    nucleus[0, 0] = 1
    er = torch.zeros(4, 4)
    er[3, 3] = 1
    for t in first:
        assert torch.equal(t[0], nucleus) and (torch.equal(t[1], er) or t[1].sum() == 0)
    assert sorted(float(t[1].sum()) for t in first) == [0.0, 1.0]  # one ER plane, one without (stratified split)
