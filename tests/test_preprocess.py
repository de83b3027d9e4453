"""Normalisation methods and resize geometry (including its exact inverse)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cellclass.core.errors import ArchitectureError
from napari_cellclass.core.io.geometry import plan
from napari_cellclass.core.io.preprocess import IMAGENET_MEAN, IMAGENET_STD, Normalization, Preprocess


def _img(rng, c=3, h=20, w=30, scale=255.0):
    return torch.from_numpy((rng.random((1, c, h, w)) * scale).astype(np.float32))


def test_meanstd_scales_by_dtype_range(rng):
    x = _img(rng)
    norm = Normalization("meanstd").for_channels(3)
    assert norm.mean == IMAGENET_MEAN and norm.std == IMAGENET_STD
    out = norm.apply(x, torch.tensor([255.0]))
    expected = (x / 255 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(out, expected)
    # float input (value_max nan) is taken as already scaled
    out_f = norm.apply(x / 255, torch.tensor([float("nan")]))
    torch.testing.assert_close(out_f, expected)


def test_non_rgb_meanstd_defaults():
    norm = Normalization("meanstd").for_channels(4)
    assert len(norm.mean) == 4 and len(norm.std) == 4
    with pytest.raises(ArchitectureError, match="2 values but the model has 3"):
        Normalization("meanstd", mean=(0.1, 0.2)).for_channels(3)


def test_percentile_per_image_and_channel(rng):
    x = _img(rng, scale=1000)
    x[0, 1] *= 10  # channel 1 ten times brighter: must not matter after per-channel scaling
    out = Normalization("percentile", p_low=0, p_high=100).apply(x)
    assert out.min() >= 0 and out.max() <= 1
    for c in range(3):
        assert out[0, c].min() == 0 and out[0, c].max() == 1


def test_divide_meansub_imagestd_none(rng):
    x = _img(rng)
    torch.testing.assert_close(Normalization("divide", divisor=255).apply(x), x / 255)
    mean = (10.0, 20.0, 30.0)
    torch.testing.assert_close(Normalization("meansub", mean=mean).apply(x), x - torch.tensor(mean).view(1, 3, 1, 1))
    own = Normalization("meansub").apply(x)
    torch.testing.assert_close(own.mean(dim=(-2, -1)), torch.zeros(1, 3), atol=1e-4, rtol=0)
    std = Normalization("image_std").apply(x)
    torch.testing.assert_close(std.mean(dim=(-2, -1)), torch.zeros(1, 3), atol=1e-4, rtol=0)
    torch.testing.assert_close(std.std(dim=(-2, -1), unbiased=False), torch.ones(1, 3), atol=1e-4, rtol=0)
    torch.testing.assert_close(Normalization("none").apply(x), x)


def test_constant_image_does_not_divide_by_zero():
    x = torch.full((1, 2, 10, 10), 7.0)
    for method in ("percentile", "image_std"):
        out = Normalization(method).apply(x)
        assert torch.isfinite(out).all()


def test_bad_options():
    with pytest.raises(ArchitectureError, match="unknown normalisation"):
        Normalization("zscore")
    with pytest.raises(ArchitectureError, match="resize policy"):
        Preprocess(resize="stretch")
    with pytest.raises(ArchitectureError, match="too small"):
        Preprocess(input_size=(4, 4))


@pytest.mark.parametrize("policy", ["squash", "letterbox", "crop"])
def test_prepare_shapes_and_geometry_inverse(policy, rng):
    pre = Preprocess((32, 32), policy, "bilinear", Normalization("none"))
    img = torch.zeros(1, 60, 90)
    img[0, 20:30, 50:60] = 1.0  # a bright square
    x, geom = pre.prepare(img)
    assert x.shape == (1, 32, 32)
    back = geom.to_source(x)  # the network input mapped back onto the source grid
    assert back.shape == (1, 60, 90)
    peak = np.unravel_index(int(back[0].argmax()), back.shape[1:])
    assert 20 <= peak[0] < 30 and 50 <= peak[1] < 60


def test_letterbox_and_crop_boxes():
    g = plan((60, 90), (32, 32), "letterbox")
    assert g.src_box == (0, 0, 60, 90) and g.dst_box[1] == 0 and g.dst_box[3] == 32  # full width, padded height
    g = plan((60, 90), (32, 32), "crop")
    assert g.src_box == (0, 15, 60, 75) and g.dst_box == (0, 0, 32, 32)
    m = torch.ones(2, 8, 8)
    src = g.to_source(m, fill=0.0)
    assert src.shape == (2, 60, 90) and src[:, :, :15].sum() == 0 and src[:, :, 15:75].min() > 0.99


def test_preprocess_round_trip_dict():
    pre = Preprocess((64, 48), "letterbox", "nearest", Normalization("percentile", p_low=2, p_high=98))
    assert Preprocess.from_dict(pre.to_dict()) == pre
