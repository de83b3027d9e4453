"""Pyramids (multiscale layers, lists of arrays, OME-Zarr) through predict, predict_map and explain."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.transform import resize

from napari_cellclass import RunOptions, explain, predict, predict_map, tile_grid
from napari_cellclass.core.errors import ImageError
from napari_cellclass.core.io.multiscale import Pyramid


def smooth_rgb(h=256, w=256, seed=0):
    """A smooth image, so a downsampled level looks like level 0 after the model's resize."""
    rng = np.random.default_rng(seed)
    small = rng.random((h // 32, w // 32, 3))
    return (resize(small, (h, w, 3), order=3) * 255).clip(0, 255).astype(np.uint8)


def pyramid_levels(img, n=4):
    out = [img]
    for _ in range(1, n):
        h, w = out[-1].shape[:2]
        out.append((resize(out[-1], (h // 2, w // 2, 3), anti_aliasing=True, preserve_range=True)).astype(np.uint8))
    return out


class CountingArray:
    """An array-like that records every region read from it (as a lazy store would)."""

    def __init__(self, a):
        self.a, self.shape, self.dtype, self.ndim = a, a.shape, a.dtype, a.ndim
        self.reads: list[int] = []

    def __getitem__(self, idx):
        out = self.a[idx]
        self.reads.append(int(np.size(out)))
        return out


def test_classification_reads_the_smallest_level_of_at_least_the_input_size(tiny_bundle):
    levels = pyramid_levels(smooth_rgb())  # 256, 128, 64, 32 px; the model takes 32x32
    counted = [CountingArray(a) for a in levels]
    probs = predict(tiny_bundle, Pyramid.from_arrays(counted, rgb=True))
    assert [bool(c.reads) for c in counted] == [False, False, False, True]
    np.testing.assert_allclose(probs, predict(tiny_bundle, levels[0]), atol=0.02)
    np.testing.assert_allclose(probs, predict(tiny_bundle, levels[3]), atol=1e-6)


def test_a_napari_multiscale_layer_is_classified_mapped_and_explained(tiny_bundle):
    from napari.layers import Image

    levels = pyramid_levels(smooth_rgb())
    layer = Image(levels, multiscale=True, rgb=True, name="slide")
    np.testing.assert_allclose(predict(tiny_bundle, layer), predict(tiny_bundle, levels[0]), atol=0.02)
    m = predict_map(tiny_bundle, layer, options=RunOptions(level=1))
    assert m.shape == (3, *tile_grid((128, 128), 32, 0.5).map_hw)
    assert predict_map(tiny_bundle, levels, tile=32, options=RunOptions(level=2)).shape == (3, *tile_grid((64, 64), 32, 0.5).map_hw)
    assert explain(tiny_bundle, layer).maps.shape[-2:] == (32, 32)  # the classification level's grid


def test_levels_that_disagree_in_channels_are_a_clear_error(tiny_bundle):
    a = np.zeros((64, 64, 3), np.uint8)
    bad = Pyramid.from_arrays([np.zeros((3, 64, 64), np.uint8), np.zeros((4, 32, 32), np.uint8)], channel_axis=0)
    with pytest.raises(ImageError, match="disagree in channels: level 1 has 4, level 0 has 3"):
        predict(tiny_bundle, bad)
    with pytest.raises(ImageError, match="level 5 does not exist"):
        predict_map(tiny_bundle, [a, a[::2, ::2]], options=RunOptions(level=5))


def test_a_lazy_level_is_read_tile_by_tile_never_whole(tiny_bundle):
    img = CountingArray(smooth_rgb(160, 160))
    m = predict_map(tiny_bundle, Pyramid.from_arrays([img, img.a[::2, ::2]], rgb=True), tile=32, batch_size=8)
    assert m.shape[0] == 3
    tile_px = 32 * 32 * 3
    assert max(img.reads[1:]) == tile_px  # after the strided statistics sample, only tiles
    assert img.reads[0] < img.a.size // 2  # the statistics sample is strided, not the whole level


def test_the_tiled_map_job_places_the_level_in_level0_pixels(tiny_model_file):
    from napari_cellclass.app.jobs import InputOptions, Request, tiled_map_job
    from napari_cellclass.app.layer_data import (
        LayerSource,
        SourceInfo,
        probability_map_layers,
    )
    from napari_cellclass.app.session import ModelChoice, Session
    from napari_cellclass.core.io.images import inspect
    from napari_cellclass.core.progress import drain

    levels = pyramid_levels(smooth_rgb(), 3)
    info = SourceInfo("slide", levels[0].shape, True, (0.5, 0.5), (10.0, 20.0))
    session = Session()
    session.set_choice(ModelChoice("file", str(tiny_model_file)))
    from napari.layers import Image

    data = Image(levels, multiscale=True, rgb=True).data  # what a multiscale layer hands the dock
    req = Request(LayerSource(data, "slide", True), info)
    maps = drain(tiled_map_job(session, [req], tile=32, options=InputOptions(level=1)))
    grid = tile_grid((128, 128), 32, 0.5)
    (sy, sx), (ty, tx) = grid.scale_translate()
    assert maps[0].probabilities.shape == (3, *grid.map_hw)
    layout, _ = inspect(levels[0], rgb=True)
    layer = probability_map_layers(maps[0].probabilities, maps[0].grid, maps[0].classes, info, layout)[0]
    np.testing.assert_allclose(layer[1]["scale"], (0.5 * 2 * sy, 0.5 * 2 * sx))
    # level 1's pixel (0, 0) is centred on level-0 pixel 0.5 (it covers pixels 0 and 1)
    np.testing.assert_allclose(layer[1]["translate"], (10 + 0.5 * (0.5 + 2 * ty), 20 + 0.5 * (0.5 + 2 * tx)))
