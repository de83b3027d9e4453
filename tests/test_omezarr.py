"""OME-Zarr (NGFF 0.4 and 0.5) stores written by ome-zarr-py, through the API and the CLI."""

from __future__ import annotations

import csv

import numpy as np
import pytest

pytest.importorskip("ome_zarr")
import zarr
from ome_zarr.format import FormatV04, FormatV05
from ome_zarr.writer import write_image

from napari_cellclass import predict, read_image
from napari_cellclass.cli import main
from napari_cellclass.core.errors import ImageError
from napari_cellclass.core.io.omezarr import read_omezarr

CHANNELS = ["DAPI", "GFP", "RFP"]


def write_store(path, fmt, shape=(3, 256, 256), seed=0, axes="cyx"):
    from skimage.transform import resize

    rng = np.random.default_rng(seed)
    img = (resize(rng.random((shape[0], shape[1] // 32, shape[2] // 32)), shape, order=3) * 255).astype(np.uint8)
    if axes == "tczyx":
        img = img[None, :, None]
    group = zarr.open_group(str(path), mode="w", zarr_format=fmt.zarr_format)
    omero = {"channels": [{"label": c, "color": "FFFFFF", "window": {"start": 0, "end": 255, "min": 0, "max": 255},
                           "active": True} for c in CHANNELS]}
    write_image(img, group, scale_factors=(2, 4, 8), axes=axes, fmt=fmt, omero=omero,
                scale={"y": 0.25, "x": 0.25}, axes_units={"y": "micrometer", "x": "micrometer"},
                storage_options={"chunks": (1, 64, 64) if axes == "cyx" else (1, 1, 1, 64, 64)})
    return path, img.reshape(shape)


@pytest.mark.parametrize("fmt", [FormatV04(), FormatV05()], ids=["ngff0.4", "ngff0.5"])
def test_axes_channels_pyramid_and_pixel_sizes_are_read(tmp_path, fmt):
    path, _ = write_store(tmp_path / "cells.ome.zarr", fmt)
    pyr = read_omezarr(path)
    assert pyr.axes == "cyx" and pyr.channel_axis == 0 and pyr.channel_names == CHANNELS
    assert [lvl.data.shape for lvl in pyr.levels] == [(3, 256, 256), (3, 128, 128), (3, 64, 64), (3, 32, 32)]
    assert [lvl.pixel_size for lvl in pyr.levels] == [(0.25, 0.25), (0.5, 0.5), (1.0, 1.0), (2.0, 2.0)]
    assert [lvl.factor for lvl in pyr.levels] == [(1, 1), (2, 2), (4, 4), (8, 8)]
    assert pyr.unit == "micrometer"
    assert pyr.for_map(pixel_size=0.9).index == 2
    assert pyr.for_classification((32, 32)).index == 3


def test_a_tczyx_store_of_one_plane_predicts_like_its_level0(tmp_path, tiny_bundle):
    path, img = write_store(tmp_path / "one.ome.zarr", FormatV05(), axes="tczyx")
    assert read_omezarr(path).axes == "cyx"
    np.testing.assert_allclose(predict(tiny_bundle, str(path)), predict(tiny_bundle, img, channel_axis=0), atol=0.02)
    assert read_image(path).pyramid is not None  # the folder-stack / training reader takes it too


def test_cli_predict_reads_a_store_and_finds_it_in_a_folder(tmp_path, tiny_model_file, tiny_bundle):
    root = tmp_path / "data"
    root.mkdir()
    path, _ = write_store(root / "cells.ome.zarr", FormatV04())
    out = tmp_path / "pred.csv"
    assert main(["predict", str(tiny_model_file), str(path), "--csv", str(out)]) == 0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1 and rows[0]["path"].endswith("cells.ome.zarr")
    expected = predict(tiny_bundle, str(path))[0]
    got = [float(rows[0][f"p_{c}"]) for c in ("a", "b", "c")]
    np.testing.assert_allclose(got, expected, atol=1e-4)
    out2 = tmp_path / "pred2.csv"
    assert main(["predict", str(tiny_model_file), str(root), "--csv", str(out2)]) == 0  # a folder holding the store
    with open(out2, newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 1  # the store once, not its chunk files


def test_classifying_a_store_reads_no_chunk_of_level0(tmp_path, tiny_bundle, monkeypatch):
    from zarr.storage import LocalStore

    path, _ = write_store(tmp_path / "big.ome.zarr", FormatV05(), shape=(3, 512, 512))
    keys: list[str] = []
    original = LocalStore.get

    async def counting_get(self, key, *args, **kwargs):
        keys.append(key)
        return await original(self, key, *args, **kwargs)

    monkeypatch.setattr(LocalStore, "get", counting_get)
    predict(tiny_bundle, str(path))
    chunks = [k for k in keys if "/c/" in k or k.split("/")[-1][:1].isdigit()]
    assert chunks and all(k.startswith("s3/") for k in chunks), chunks  # only the 64x64 level, whose side >= 32


def test_store_without_multiscales_metadata(tmp_path, tiny_bundle):
    group = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    group.create_array("raw", shape=(64, 64), dtype="uint8")
    with pytest.raises(ImageError, match="without OME-NGFF multiscales metadata"):
        predict(tiny_bundle, str(tmp_path / "plain.zarr"))


def test_a_missing_chunk_is_named(tmp_path, tiny_bundle):
    path, _ = write_store(tmp_path / "holes.ome.zarr", FormatV04())
    chunk = next(p for p in (path / "s1").rglob("*") if p.is_file() and not p.name.startswith("."))
    chunk.unlink()
    with pytest.raises(ImageError, match=r"level 1 \('s1'\) is missing 1 of its \d+ chunks"):
        predict(tiny_bundle, str(path))


def test_a_damaged_chunk_is_named(tmp_path, tiny_bundle):
    path, _ = write_store(tmp_path / "bad.ome.zarr", FormatV04())
    for p in (path / "s3").rglob("*"):
        if p.is_file() and not p.name.startswith("."):
            p.write_bytes(b"not a compressed chunk")
    with pytest.raises(ImageError, match="chunk of the store is damaged"):
        predict(tiny_bundle, str(path))


def test_a_remote_store_that_cannot_be_reached(tiny_bundle):
    # port 9 (discard) on the loopback: nothing listens, as when offline
    with pytest.raises(ImageError, match="cannot read the remote store .*offline"):
        predict(tiny_bundle, "http://127.0.0.1:9/cells.ome.zarr")
