"""core/images: every input layout in, canonical float32 (C, H, W) out, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cellclass.core.errors import ChannelMismatchError, ImageError
from napari_cellclass.core.io.images import guess_layout, iter_planes, match_channels, to_canonical


@pytest.mark.parametrize(
    "dtype, values",
    [
        (np.uint8, [0, 255]),
        (np.uint16, [0, 65535]),
        (np.int32, [-5000, 7000]),
        (np.float64, [-1.5, 2.5]),
        (np.float32, [0.0, 1.0]),
        (np.bool_, [False, True]),
    ],
)
def test_greyscale_any_dtype(dtype, values):
    img = np.zeros((20, 30), dtype=dtype)
    img[0, 0], img[-1, -1] = values
    out = to_canonical(img)
    assert out.shape == (1, 20, 30) and out.dtype == np.float32
    assert out[0, 0, 0] == float(values[0]) and out[0, -1, -1] == float(values[1])


@pytest.mark.parametrize(
    "shape, expected_planes, expected_c",
    [
        ((40, 50, 3), 1, 3),  # RGB
        ((40, 50, 4), 1, 4),  # RGBA
        ((4, 40, 50), 1, 4),  # channel-first
        ((7, 40, 50), 1, 7),  # channel-first, 7 channels
        ((12, 40, 50), 12, 1),  # a greyscale stack (T, H, W)
        ((5, 2, 40, 50), 5, 2),  # (T, C, H, W)
        ((6, 40, 50, 3), 6, 3),  # (T, H, W, 3)
    ],
)
def test_layouts(shape, expected_planes, expected_c, rng):
    data = rng.integers(0, 255, size=shape).astype(np.uint8)
    planes = list(iter_planes(data))
    assert len(planes) == expected_planes
    assert all(p.data.shape == (expected_c, 40, 50) for p in planes)
    assert [p.frame for p in planes] == list(range(expected_planes))
    assert planes[0].value_max == 255.0


def test_planes_hold_the_right_pixels(rng):
    stack = rng.random((3, 2, 16, 20)).astype(np.float32)  # (T, C, H, W)
    planes = list(iter_planes(stack))
    np.testing.assert_array_equal(planes[2].data, stack[2])
    rgb_stack = rng.random((2, 16, 20, 3)).astype(np.float32)
    np.testing.assert_array_equal(list(iter_planes(rgb_stack))[1].data, np.moveaxis(rgb_stack[1], -1, 0))


def test_channel_axis_override(rng):
    data = rng.random((3, 40, 50)).astype(np.float32)
    assert guess_layout(data.shape).channel_axis == 0
    stack = list(iter_planes(data, channel_axis="none"))
    assert len(stack) == 3 and stack[0].data.shape == (1, 40, 50)
    hwc = rng.random((40, 50, 5)).astype(np.float32)
    out = to_canonical(hwc, channel_axis=-1)
    np.testing.assert_array_equal(out, np.moveaxis(hwc, -1, 0))


def test_model_context_resolves_ambiguity():
    # a 1-channel model reads (3, H, W) as a stack of three planes
    assert guess_layout((3, 40, 50), in_chans=1).frame_axis == 0
    assert guess_layout((4, 40, 50), in_chans=4).channel_axis == 0


def test_ambiguous_shape_names_the_option():
    with pytest.raises(ImageError, match="channel_axis"):
        guess_layout((5, 40, 50), in_chans=3)


@pytest.mark.parametrize(
    "shape, match",
    [
        ((2, 3, 4, 40, 50), "more dimensions than supported"),
        ((0, 40), "empty"),
        ((1, 1), "at least 8x8"),
        ((40,), "at least 2 dimensions"),
    ],
)
def test_bad_shapes(shape, match):
    with pytest.raises(ImageError, match=match):
        to_canonical(np.zeros(shape, np.float32))


def test_nan_and_inf_are_named(rng):
    img = rng.random((20, 20)).astype(np.float32)
    img[3, 4] = np.nan
    img[5, 5] = np.inf
    with pytest.raises(ImageError, match="2 of 400 pixel values are NaN or infinite") as err:
        to_canonical(img, name="layer 'cells'")
    assert "layer 'cells'" in str(err.value) and "nan_to_num" in str(err.value)
    with pytest.raises(ImageError, match="every pixel is NaN"):
        to_canonical(np.full((20, 20), np.nan))


def test_unsupported_dtype_and_none():
    with pytest.raises(ImageError, match="complex"):
        to_canonical(np.zeros((20, 20), np.complex64))
    with pytest.raises(ImageError, match="no image data"):
        to_canonical(None)


def test_stack_is_not_a_single_image(rng):
    with pytest.raises(ImageError, match="stack"):
        to_canonical(rng.random((10, 20, 20)).astype(np.float32))


def test_match_channels_conversions(rng):
    rgba = rng.random((4, 10, 10)).astype(np.float32)
    np.testing.assert_array_equal(match_channels(rgba, 3), rgba[:3])
    grey = rng.random((1, 10, 10)).astype(np.float32)
    assert match_channels(grey, 3).shape == (3, 10, 10)
    lum = match_channels(rgba[:3], 1)
    np.testing.assert_allclose(lum[0], 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2], rtol=1e-6)
    seven = rng.random((7, 10, 10)).astype(np.float32)
    np.testing.assert_array_equal(match_channels(seven, 3, channels=[6, 0, 2]), seven[[6, 0, 2]])


def test_match_channels_errors(rng):
    seven = rng.random((7, 10, 10)).astype(np.float32)
    with pytest.raises(ChannelMismatchError, match="expects 3 channel.*has 7.*choose 3"):
        match_channels(seven, 3)
    with pytest.raises(ChannelMismatchError, match="do not exist"):
        match_channels(seven, 3, channels=[0, 1, 9])
    with pytest.raises(ChannelMismatchError, match="2 channel"):
        match_channels(seven, 3, channels=[0, 1])
