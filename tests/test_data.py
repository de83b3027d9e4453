"""core.data: data sets from folders, CSV manifests and in-memory items; splits; augmentations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.io import imsave

from napari_cellclass.core.data import (class_weights, kfold_splits, load_dataset, sample_weights, stratified_split,
                                        training_fraction)
from napari_cellclass.core.data.augment import augment_batch, make_generator
from napari_cellclass.core.errors import DataError
from napari_cellclass.core.data.augment import Augment
from napari_cellclass.core.synth import write_dataset


# ----------------------------------------------------------------------------- sources
def test_class_folders_with_classes_txt_order(tmp_path):
    root = write_dataset("brightfield", tmp_path / "bf", 6, size=(40, 40))
    (root / "classes.txt").write_text("MCF7\nMDA-MB-468\n")
    ds = load_dataset(root)
    assert ds.classes == ["MCF7", "MDA-MB-468"] and not ds.multilabel
    assert len(ds) == 6 and ds.class_counts() == [3, 3]
    plane, vmax = ds[0]
    assert plane.dtype == np.float32 and plane.shape == (1, 40, 40) and vmax == 255.0
    assert ds.in_chans == 1 and ds.masks is None
    assert all("MCF7" in n for n, lab in zip(ds.names, ds.labels) if lab == [0])
    y = ds.targets()
    assert y.shape == (6, 2) and (y.sum(1) == 1).all()


def test_folder_without_classes_txt_sorts_subfolders(tmp_path):
    for c in ("b", "a"):
        (tmp_path / c).mkdir()
        imsave(tmp_path / c / "x.png", np.full((20, 20, 3), 9, np.uint8), check_contrast=False)
    ds = load_dataset(tmp_path)
    assert ds.classes == ["a", "b"] and ds.labels == [[0], [1]] and ds.in_chans == 3


def test_protein_manifest_with_masks(tmp_path):
    root = write_dataset("protein", tmp_path / "p", 5, size=(40, 40))
    ds = load_dataset(root)  # the folder holds labels.csv: read as a manifest
    assert ds.multilabel and ds.in_chans == 4 and len(ds) == 5
    same = load_dataset(root / "labels.csv")
    assert same.labels == ds.labels and same.classes == ds.classes
    m = ds.masks[1]
    assert m.dtype == bool and m.shape == (len(ds.classes), 40, 40)
    # masks are present exactly for the labelled classes
    assert set(np.flatnonzero(m.any((1, 2)))) <= set(ds.labels[1])


def test_in_memory_items_with_names_and_indices():
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (2, 16, 16)).astype(np.uint8) for _ in range(4)]
    ds = load_dataset([(im, ["y"] if i % 2 else ["x"], f"n{i}") for i, im in enumerate(imgs)], channel_axis=0)
    assert ds.classes == ["x", "y"] and ds.labels == [[0], [1], [0], [1]] and ds.names[3] == "n3"
    ds2 = load_dataset([(im, [i % 2], f"n{i}") for i, im in enumerate(imgs)], ["x", "y"], channel_axis=0)
    assert ds2.labels == ds.labels
    np.testing.assert_array_equal(ds2[1][0], imgs[1].astype(np.float32))
    sub = ds.subset([3, 1])
    assert sub.names == ["n3", "n1"] and sub.class_counts() == [0, 2]
    with pytest.raises(DataError, match="no class names"):
        load_dataset([(imgs[0], [0], "a")])


def test_errors_name_the_problem(tmp_path):
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no images found"):
        load_dataset(tmp_path / "empty")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nope")
    bad = tmp_path / "bad"
    (bad / "a").mkdir(parents=True)
    (bad / "a" / "broken.png").write_bytes(b"not a png at all")
    ds = load_dataset(bad)  # lazy: the index is fine, the pixels are not
    with pytest.raises(DataError, match="broken.png"):
        ds[0]
    csv = tmp_path / "m.csv"
    imsave(tmp_path / "i.png", np.zeros((20, 20), np.uint8), check_contrast=False)
    csv.write_text("path,labels\ni.png,cat\ni.png,dog;mouse\n")
    with pytest.raises(DataError, match=r"line 3: unknown class\(es\) \['mouse'\]"):
        load_dataset(csv, ["cat", "dog"])
    with pytest.raises(DataError, match="other than one label"):
        load_dataset(csv, multi_label=False)


# ----------------------------------------------------------------------------- splits
def test_stratified_split_keeps_proportions():
    labels = [[0]] * 40 + [[1]] * 20 + [[2]] * 2
    tr, va = stratified_split(labels, 0.25, seed=3)
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == 62
    counts = np.bincount([labels[i][0] for i in va], minlength=3)
    assert counts.tolist() == [10, 5, 1]
    assert np.array_equal(stratified_split(labels, 0.25, seed=3)[1], va)
    assert not np.array_equal(stratified_split(labels, 0.25, seed=4)[1], va)


def test_multilabel_split_and_kfold_cover_rare_classes():
    labels = [[0, 1]] * 10 + [[0]] * 20 + [[0, 2]] * 10
    _, va = stratified_split(labels, 0.2)
    assert any(2 in labels[i] for i in va) and any(1 in labels[i] for i in va)
    folds = kfold_splits(labels, 5, seed=0)
    assert len(folds) == 5
    tests = np.concatenate([te for _, te in folds])
    assert sorted(tests.tolist()) == list(range(40))
    for tr, te in folds:
        assert len(np.intersect1d(tr, te)) == 0
        assert sum(2 in labels[i] for i in te) == 2  # stratified on the rarest label
    with pytest.raises(DataError):
        kfold_splits(labels[:3], 5)


def test_class_weights_sampling_and_fractions():
    labels = [[0]] * 30 + [[1]] * 10
    w = class_weights(labels, 2)
    assert w[1] == pytest.approx(3 * w[0])
    sw = sample_weights(labels, 2)
    assert sw[:30].sum() == pytest.approx(sw[30:].sum())
    pw = class_weights([[0], [0, 1], [0]], 2, multilabel=True)
    assert pw.tolist() == [1.0, 2.0]  # class 0 is in every image: no negatives to balance, weight 1 (not 0)
    assert class_weights([[0], [0, 1], [1], [1]], 2, multilabel=True).tolist() == pytest.approx([1.0, 1 / 3])
    f20, f40 = training_fraction(labels, 0.2, 1), training_fraction(labels, 0.4, 1)
    assert len(f20) == 8 and len(f40) == 16 and set(f20) <= set(f40)


# ----------------------------------------------------------------------------- augmentation
def _batch(n=6, c=3, h=16, w=20):
    return torch.arange(n * c * h * w, dtype=torch.float32).view(n, c, h, w) / 100.0


def test_augment_keeps_shape_dtype_and_is_seeded():
    x = _batch()
    aug = Augment(hflip=True, vflip=True, rot90=True, rotate_deg=15, shift=0.1, zoom=0.1, shear_deg=5,
                  fill="nearest", intensity_jitter=0.1)
    a, _ = augment_batch(x, aug, make_generator(1))
    b, _ = augment_batch(x, aug, make_generator(1))
    c, _ = augment_batch(x, aug, make_generator(2))
    assert a.shape == x.shape and a.dtype == x.dtype and a.device == x.device
    assert torch.equal(a, b) and not torch.equal(a, c)
    same, _ = augment_batch(x, Augment(), make_generator(1))
    assert same is x


def test_flips_are_exact():
    x = _batch(n=64)
    out, _ = augment_batch(x, Augment(hflip=True), make_generator(0))
    flipped = [torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)]
    kept = [torch.equal(o, xi) for o, xi in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept)) and 10 < sum(flipped) < 54
    sq = _batch(n=32, h=12, w=12)
    out, _ = augment_batch(sq, Augment(rot90=True), make_generator(0))
    for o, xi in zip(out, sq):
        assert any(torch.equal(o, torch.rot90(xi, k, dims=(-2, -1))) for k in range(4))


def test_affine_fill_modes_and_aux_follows():
    x = torch.ones(4, 1, 16, 16)
    shifted, _ = augment_batch(x, Augment(shift=0.4, width_shift_only=True, fill="constant"), make_generator(0))
    assert (shifted == 0).any() and (shifted[:, :, :, :] >= 0).all()
    nearest, _ = augment_batch(x, Augment(shift=0.4, width_shift_only=True, fill="nearest"), make_generator(0))
    assert torch.allclose(nearest, torch.ones_like(nearest))
    img = torch.zeros(8, 2, 16, 16)
    img[:, :, 2:6, 3:7] = 1.0
    aux = img[:, :1].clone()
    a, m = augment_batch(img, Augment(hflip=True, vflip=True, rot90=True, rotate_deg=30), make_generator(5), aux)
    assert m.shape == aux.shape
    assert torch.allclose(a[:, :1], m, atol=1e-5)  # the mask moved exactly like the image


@pytest.mark.parametrize("dev", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))])
def test_augment_runs_on_the_device(dev):
    x = _batch().to(dev)
    out, _ = augment_batch(x, Augment(hflip=True, rotate_deg=10, zoom=0.1, intensity_jitter=0.2), make_generator(0))
    assert out.device.type == dev and out.shape == x.shape


# ----------------------------------------------------------------------------- caches
def _counting_reader(monkeypatch) -> list[str]:
    """Record every file decode the data set does (the raw cache should avoid repeats)."""
    import napari_cellclass.core.io.files as imagefiles

    calls: list[str] = []
    real = imagefiles.read_image

    def counted(path, *args, **kwargs):
        calls.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(imagefiles, "read_image", counted)
    return calls


def test_raw_cache_decodes_each_file_once_across_subsets(tmp_path, monkeypatch):
    root = write_dataset("brightfield", tmp_path / "bf", 4, size=(40, 40))
    calls = _counting_reader(monkeypatch)
    ds = load_dataset(root)
    first, _ = ds[1]
    again, _ = ds[1]
    assert len(calls) == 1 and np.array_equal(first, again)
    sub = ds.subset([1, 2])
    assert np.array_equal(sub[0][0], first) and len(calls) == 1, "a subset shares its parent's cache"
    sub[1]
    assert len(calls) == 2
    uncached = load_dataset(root, cache=False)
    uncached[0], uncached[0]
    assert len(calls) == 4, "cache=False re-reads every time"


def test_raw_cache_evicts_least_recently_used_over_its_budget(tmp_path, monkeypatch):
    import napari_cellclass.core.data.dataset as dataset_mod

    root = write_dataset("brightfield", tmp_path / "bf", 6, size=(40, 40))
    calls = _counting_reader(monkeypatch)
    ds = load_dataset(root)
    nbytes = ds.raw(0)[0].nbytes  # as cached: the file's own dtype
    monkeypatch.setattr(dataset_mod, "RAW_CACHE_BYTES", 4 * nbytes)  # room for four planes
    for i in (1, 2, 3):
        ds[i]
    ds[0]  # touch 0: now 1 is the least recently used
    assert len(calls) == 4
    ds[4]  # a fifth plane: over budget, 1 goes
    assert len(calls) == 5 and ds._store._raw_bytes <= 4 * nbytes
    for i in (0, 2, 3, 4):
        ds[i]
    assert len(calls) == 5, "recently used planes stay cached"
    ds[1]
    assert len(calls) == 6 and calls[-1] == calls[1], "the evicted plane is read again"
    monkeypatch.setattr(dataset_mod, "RAW_CACHE_BYTES", 3 * nbytes)  # a plane over a quarter of it is never kept
    fresh = load_dataset(root)
    fresh[5], fresh[5]
    assert len(calls) == 8 and not fresh._store._raw


def test_cached_inputs_reuse_the_tensor_until_the_recipe_changes(monkeypatch):
    from napari_cellclass.core.data.tensors import cached_inputs
    from napari_cellclass.core.io.preprocess import Normalization, Preprocess

    rng = np.random.default_rng(0)
    items = [(rng.integers(0, 255, (1, 20, 24)).astype(np.uint8), [i % 2], f"i{i}") for i in range(5)]
    ds = load_dataset(items, ["a", "b"], channel_axis=0)
    calls = []
    real = Preprocess.prepare_batch

    def counted(self, images, *args, **kwargs):
        calls.append(self)
        return real(self, images, *args, **kwargs)

    monkeypatch.setattr(Preprocess, "prepare_batch", counted)
    cpu = torch.device("cpu")
    pre = Preprocess(input_size=(16, 16), normalization=Normalization("divide"))
    x, rows = cached_inputs(ds, pre, 1, cpu)
    assert x.shape == (5, 1, 16, 16) and len(calls) == 5
    plane, vmax = ds[3]
    direct, _ = real(pre, torch.from_numpy(plane)[None], torch.tensor([vmax], dtype=torch.float32))
    assert torch.allclose(x[rows[3]], direct[0])

    x2, _ = cached_inputs(ds, pre, 1, cpu)
    assert x2 is x and len(calls) == 5, "same recipe: nothing preprocessed again"
    sub_x, sub_rows = cached_inputs(ds.subset([4, 1]), Preprocess(input_size=(16, 16),
                                                                   normalization=Normalization("divide")), 1, cpu)
    assert sub_x is x and sub_rows.tolist() == [4, 1] and len(calls) == 5, "an equal recipe is the same key"

    bigger, _ = cached_inputs(ds, Preprocess(input_size=(24, 24), normalization=Normalization("divide")), 1, cpu)
    assert bigger.shape == (5, 1, 24, 24) and len(calls) == 10
    other_norm, _ = cached_inputs(ds, Preprocess(input_size=(16, 16), normalization=Normalization("image_std")), 1, cpu)
    assert len(calls) == 15 and not torch.allclose(other_norm, x)
    assert abs(float(other_norm[0].mean())) < 1e-4 and float(x.min()) >= 0, "each recipe's own normalisation"
    three, _ = cached_inputs(ds, pre, 3, cpu)
    assert three.shape == (5, 3, 16, 16) and len(calls) == 20
    assert cached_inputs(ds, pre, 1, cpu)[0] is x and len(calls) == 20, "earlier recipes stay cached"
