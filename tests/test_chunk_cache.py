"""Lazy tiled maps read each zarr/dask chunk about once, through a bounded chunk cache."""

from __future__ import annotations

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")
da = pytest.importorskip("dask.array")

from napari_cellclass import explain, predict_map
from napari_cellclass.core.io.chunk_cache import (
    ChunkCache,
    chunk_cached,
    chunk_friendly_order,
)


def smooth(h, w, seed=0):
    from skimage.transform import resize

    rng = np.random.default_rng(seed)
    return (resize(rng.random((3, h // 16, w // 16)), (3, h, w), order=3) * 255).astype(np.uint8)


def counting_zarr(tmp_path, img, chunks, monkeypatch):
    """A zarr array on disk and the chunk keys its store is asked for."""
    from zarr.storage import LocalStore

    arr = zarr.open_array(str(tmp_path / "a.zarr"), mode="w", shape=img.shape, chunks=chunks, dtype=img.dtype)
    arr[:] = img
    keys: list[str] = []
    original = LocalStore.get

    async def counting_get(self, key, *args, **kwargs):
        if "/c/" in key or key.startswith("c/"):
            keys.append(key)
        return await original(self, key, *args, **kwargs)

    monkeypatch.setattr(LocalStore, "get", counting_get)
    return zarr.open_array(str(tmp_path / "a.zarr"), mode="r"), keys


def test_regions_read_through_the_cache_equal_the_array():
    img = np.arange(3 * 100 * 90, dtype=np.int32).reshape(3, 100, 90)
    lazy = da.from_array(img, chunks=(3, 32, 25))
    cache = ChunkCache(lazy, 1, 2)
    for ys, xs in [(slice(0, 100), slice(0, 90)), (slice(5, 70), slice(24, 26)), (slice(31, 33), slice(89, 90)),
                   (slice(None), slice(10, 60))]:
        np.testing.assert_array_equal(cache[:, ys, xs], img[:, ys, xs])
    np.testing.assert_array_equal(cache[1, 3:40, 7:60], img[1, 3:40, 7:60])  # an integer index drops its axis
    np.testing.assert_array_equal(cache[:, ::7, ::5], img[:, ::7, ::5])  # strided: read as asked
    assert cache.reads == 4 * 4 + 2 * 3  # every (channels, y, x) chunk once, then the channel-1 chunks once


def test_the_cache_holds_no_more_than_its_budget():
    img = np.zeros((1000, 1000), np.uint8)
    cache = ChunkCache(da.from_array(img, chunks=100), 0, 1, budget=5 * 100 * 100)
    for y in range(0, 1000, 50):
        for x in range(0, 1000, 50):
            cache[y:y + 50, x:x + 50]
    assert cache._bytes <= 5 * 100 * 100 and len(cache._held) == 5


def test_numpy_and_huge_chunks_are_not_wrapped():
    img = np.zeros((64, 64), np.uint8)
    assert chunk_cached(img, 0, 1) is img
    one_chunk = da.from_array(img, chunks=64)
    assert chunk_cached(one_chunk, 0, 1, budget=64 * 64) is one_chunk  # a few chunks would not fit


def test_a_tiled_map_of_a_zarr_array_reads_each_chunk_once(tmp_path, monkeypatch, tiny_bundle):
    img = smooth(256, 256)
    arr, keys = counting_zarr(tmp_path, img, (3, 64, 64), monkeypatch)
    lazy = predict_map(tiny_bundle, arr, tile=48, overlap=0.5, channel_axis=0, batch_size=8)
    tiles = keys[:]  # the strided statistics sample, if the model needs one, reads through zarr directly
    np.testing.assert_allclose(lazy, predict_map(tiny_bundle, img, tile=48, overlap=0.5, channel_axis=0, batch_size=8),
                               atol=1e-6)
    n_chunks = 4 * 4
    stats_reads = n_chunks if tiny_bundle.preprocess.normalization.needs_image_stats() else 0
    assert len(tiles) == n_chunks + stats_reads, sorted(tiles)  # 81 overlapping tiles, each chunk read once


def test_a_tiled_explanation_of_a_dask_array_reads_each_chunk_once(tiny_bundle):
    img = smooth(128, 128)
    calls: list[tuple] = []
    base = da.from_array(img, chunks=(3, 32, 32))

    def counted(block, block_info=None):
        calls.append(tuple(block_info[0]["chunk-location"]))
        return block

    lazy = base.map_blocks(counted, dtype=img.dtype)
    got = explain(tiny_bundle, lazy, tile=32, channel_axis=0)
    want = explain(tiny_bundle, img, tile=32, channel_axis=0)
    np.testing.assert_allclose(got.maps, want.maps, atol=1e-5)
    stats = 16 if tiny_bundle.preprocess.normalization.needs_image_stats() else 0
    assert len(calls) - stats <= 16 + 1, sorted(calls)  # the 16 chunks (+ dask's meta probe)


def test_bands_keep_the_chunks_in_use_inside_the_budget():
    img = np.zeros((3, 2000, 4000), np.uint8)
    cache = ChunkCache(da.from_array(img, chunks=(3, 100, 100)), 1, 2, budget=3 * 100 * 100 * 3 * 10)
    origins = [(y, x) for y in range(0, 1950, 25) for x in range(0, 3950, 25)]
    order = chunk_friendly_order(origins, cache, (50, 50))
    assert sorted(order) == sorted(origins)
    for y, x in order:
        cache[:, y:y + 50, x:x + 50]
    n_chunks = 20 * 40
    assert cache.reads < 1.3 * n_chunks  # row-major over the full width would re-read nearly every chunk


def test_a_planned_cache_holds_only_the_chunk_rows_in_use():
    img = np.zeros((3, 2000, 4000), np.uint8)
    cache = ChunkCache(da.from_array(img, chunks=(3, 100, 100)), 1, 2)  # the default budget: all of it would fit
    origins = [(y, x) for y in range(0, 1950, 25) for x in range(0, 3950, 25)]
    most = 0
    for y, x in chunk_friendly_order(origins, cache, (50, 50)):
        cache[:, y:y + 50, x:x + 50]
        most = max(most, cache._bytes)
    assert cache.reads == 20 * 40  # every chunk once
    assert most <= (2 * 40 + 2) * 3 * 100 * 100  # two chunk rows across the width, not the whole image
