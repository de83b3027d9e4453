"""Batched prediction over images, files and stacks; tiled probability maps."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from napari_cellclass import build_model, predict, predict_map, predict_records, preprocess, tile_grid
from napari_cellclass.core.errors import ChannelMismatchError, ImageError


def test_rows_per_image_and_plane(tiny_bundle, rng):
    single = rng.integers(0, 255, (40, 50, 3)).astype(np.uint8)
    stack = rng.integers(0, 255, (5, 40, 50, 3)).astype(np.uint8)
    out = predict(tiny_bundle, [single, stack, single])
    assert out.shape == (7, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out[0], out[6], rtol=1e-6)  # same image, same answer
    recs = list(predict_records(tiny_bundle, [single, stack]))
    assert [(r.index, r.frame) for r in recs] == [(0, 0)] + [(1, t) for t in range(5)]


def test_single_array_generator_and_layer_like_inputs(tiny_bundle, rng):
    img = rng.integers(0, 255, (40, 50, 3)).astype(np.uint8)

    class Layer:  # what a napari Image layer offers
        data = img
        rgb = True
        name = "cells"

    a = predict(tiny_bundle, img)
    b = predict(tiny_bundle, (x for x in [img]))
    c = predict(tiny_bundle, Layer())
    assert a.shape == (1, 3) and np.array_equal(a, b) and np.array_equal(a, c)


def test_batch_size_does_not_change_results(tiny_bundle, rng):
    imgs = [rng.integers(0, 255, (30 + i, 40, 3)).astype(np.uint8) for i in range(7)]
    np.testing.assert_allclose(predict(tiny_bundle, imgs, batch_size=1), predict(tiny_bundle, imgs, batch_size=4), atol=1e-6)


def test_files(tiny_bundle, tmp_path, rng):
    from skimage.io import imsave

    imsave(tmp_path / "a.png", rng.integers(0, 255, (40, 50, 3)).astype(np.uint8))
    tifffile.imwrite(tmp_path / "b.tif", rng.integers(0, 255, (2, 40, 50, 3)).astype(np.uint8), metadata={"axes": "TYXS"})
    out = predict(tiny_bundle, [tmp_path / "a.png", str(tmp_path / "b.tif")])
    assert out.shape == (3, 3)


def test_model_mode_is_restored(tiny_bundle, rng):
    tiny_bundle.network.train()
    predict(tiny_bundle, rng.random((40, 40, 3)).astype(np.float32))
    assert all(m.training for m in tiny_bundle.network.modules())


def test_output_modes(rng):
    binary = build_model("scaffoldnet-brightfield", input_size=(32, 32))
    p = predict(binary, rng.random((40, 40)).astype(np.float32))
    assert p.shape == (1, 2) and np.isclose(p.sum(), 1.0)
    multi = build_model("protein-localization-cnn", input_size=(32, 32))
    p = predict(multi, rng.random((4, 40, 40)).astype(np.float32))
    assert p.shape == (1, 13) and ((p > 0) & (p < 1)).all()


def test_channel_mismatch_and_picking(rng):
    bundle = build_model("resnet18", classes=["a", "b"], input_size=(32, 32))
    seven = rng.random((7, 40, 40)).astype(np.float32)
    with pytest.raises(ImageError, match="7 channels or a stack.*pick channels"):
        predict(bundle, seven)
    with pytest.raises(ChannelMismatchError, match="expects 3 channel.*has 7.*choose 3"):
        predict(bundle, seven, channel_axis=0)
    assert predict(bundle, seven, channels=[0, 3, 6]).shape == (1, 2)


def test_errors_name_the_image(tiny_bundle, rng):
    bad = rng.random((40, 40, 3)).astype(np.float32)
    bad[0, 0, 0] = np.nan
    with pytest.raises(ImageError, match="image 1"):
        predict(tiny_bundle, [rng.random((40, 40, 3)).astype(np.float32), bad])
    recs = list(predict_records(tiny_bundle, [bad, rng.random((40, 40, 3)).astype(np.float32)], on_error="skip"))
    assert recs[0].error and "NaN" in recs[0].error and recs[1].error is None and recs[1].probs.shape == (3,)


def test_preprocess_is_what_the_network_sees(tiny_bundle, rng):
    img = rng.integers(0, 255, (60, 80, 3)).astype(np.uint8)
    x = preprocess(tiny_bundle, img)
    assert x.shape == (3, 32, 32)
    with torch.no_grad():
        direct = torch.softmax(tiny_bundle.network.eval()(x[None]), -1).numpy()
    np.testing.assert_allclose(direct, predict(tiny_bundle, img), atol=1e-6)


def test_tile_grid_covers_every_pixel():
    g = tile_grid((100, 70), 32, 0.5)
    assert g.stride_hw == (16, 16) and g.map_hw == (7, 5)
    assert g.ys[0] == 0 and g.ys[-1] == 100 - 32 and g.xs[-1] == 70 - 32
    scale, translate = g.scale_translate()
    assert scale == (16.0, 16.0) and translate == (7.5, 7.5)
    small = tile_grid((20, 30), 64, 0.25)
    assert small.tile_hw == (20, 30) and small.n_tiles == 1


def test_map_of_one_tile_equals_prediction(tiny_bundle, rng):
    img = rng.integers(0, 255, (32, 32, 3)).astype(np.uint8)
    m = predict_map(tiny_bundle, img, tile=32, overlap=0.0)
    assert m.shape == (3, 1, 1)
    np.testing.assert_allclose(m[:, 0, 0], predict(tiny_bundle, img)[0], atol=1e-6)


def test_map_cells_equal_the_crops_they_came_from(tiny_bundle, rng):
    img = rng.integers(0, 255, (64, 96, 3)).astype(np.uint8)
    m = predict_map(tiny_bundle, img, tile=32, overlap=0.0, batch_size=4)
    assert m.shape == (3, 2, 3)
    crops = [img[y:y + 32, x:x + 32] for y in (0, 32) for x in (0, 32, 64)]
    expected = predict(tiny_bundle, crops).reshape(2, 3, 3).transpose(2, 0, 1)
    np.testing.assert_allclose(m, expected, atol=1e-5)


def test_map_normalises_with_whole_image_statistics(rng):
    bundle = build_model("resnet18", classes=["a", "b"], input_size=(32, 32))
    from dataclasses import replace

    from napari_cellclass.core.io.preprocess import Normalization

    bundle.preprocess = replace(bundle.preprocess, normalization=Normalization("percentile"))
    img = rng.random((64, 64, 3)).astype(np.float32)
    img[:32] *= 0.01  # a dark half: per-tile scaling would hide it, global scaling must not
    m = predict_map(bundle, img, tile=32, overlap=0.0)
    dark_tile_alone = predict(bundle, img[:32, :32])[0]
    assert not np.allclose(m[:, 0, 0], dark_tile_alone, atol=1e-4)


def test_map_reads_only_tiles_of_a_memmap(tiny_bundle, tmp_path, rng):
    path = tmp_path / "big.npy"
    big = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(300, 400, 3))
    big[:] = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    big.flush()
    m = predict_map(tiny_bundle, np.load(path, mmap_mode="r"), tile=64, overlap=0.5)
    assert m.shape == (3, 10, 13) and np.isfinite(m).all()
    np.testing.assert_allclose(m.sum(0), 1.0, rtol=1e-5)


def test_member_probabilities_of_an_ensemble(tiny_bundle, rng):
    """predict_members gives every member's rows; with soft voting their mean is predict()'s answer."""
    from napari_cellclass import predict_members
    from napari_cellclass.core.annotations.active import rank
    from napari_cellclass.core.errors import CellclassError

    ens = build_model(["senescence_cnn", "senescence_cnn"], classes=["a", "b", "c"], input_size=(32, 32))
    images = [rng.integers(0, 255, (40, 40, 3)).astype(np.uint8), rng.integers(0, 255, (3, 32, 32, 3)).astype(np.uint8)]
    members = predict_members(ens, images, batch_size=3, device="cpu")
    assert members.shape == (2, 4, 3) and members.dtype == np.float32
    np.testing.assert_allclose(members.sum(-1), 1.0, rtol=1e-5)
    assert not np.allclose(members[0], members[1])  # two independently initialised networks
    np.testing.assert_allclose(members.mean(0), predict(ens, images, batch_size=2, device="cpu"), atol=1e-5)
    recs = list(predict_records(ens, images, device="cpu", members=True))
    assert [r.probs.shape for r in recs] == [(2, 3)] * 4
    assert len(rank(members, "mutual_information")) == 4
    with pytest.raises(CellclassError, match="single network"):
        predict_members(tiny_bundle, images[0], device="cpu")
