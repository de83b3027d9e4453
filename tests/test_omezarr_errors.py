"""The issue's bad inputs, through the CLI and the lazy tiled path: a clear message each."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ome_zarr")
import zarr
from ome_zarr.format import FormatV04
from test_omezarr import write_store

from napari_cellclass import RunOptions, predict_map
from napari_cellclass.cli import main
from napari_cellclass.core.errors import ImageError


def test_cli_names_a_store_without_multiscales_metadata(tmp_path, tiny_model_file, capsys):
    group = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    group.create_array("raw", shape=(64, 64), dtype="uint8")
    code = main(["predict", str(tiny_model_file), str(tmp_path / "plain.zarr"), "--csv", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err
    assert code != 0 and "without OME-NGFF multiscales metadata" in err and "Traceback" not in err


def test_cli_names_a_remote_store_that_cannot_be_reached(tmp_path, tiny_model_file, capsys):
    code = main(["predict", str(tiny_model_file), "http://127.0.0.1:9/cells.ome.zarr", "--csv", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err
    assert code != 0 and "cannot read the remote store" in err and "offline" in err and "Traceback" not in err


def test_a_damaged_chunk_read_through_the_chunk_cache_is_named(tmp_path, tiny_bundle):
    path, _ = write_store(tmp_path / "bad.ome.zarr", FormatV04())
    for p in (path / "s1").rglob("*"):
        if p.is_file() and not p.name.startswith("."):
            p.write_bytes(b"not a compressed chunk")
    with pytest.raises(ImageError, match="chunk of the store is damaged"):
        predict_map(tiny_bundle, str(path), tile=32, options=RunOptions(level=1))


def test_a_missing_chunk_stops_a_tiled_map_too(tmp_path, tiny_bundle):
    path, _ = write_store(tmp_path / "holes.ome.zarr", FormatV04())
    next(p for p in (path / "s2").rglob("*") if p.is_file() and not p.name.startswith(".")).unlink()
    with pytest.raises(ImageError, match=r"level 2 \('s2'\) is missing 1 of its \d+ chunks"):
        predict_map(tiny_bundle, str(path), tile=32, options=RunOptions(level=2))


def test_levels_that_disagree_in_channels_stop_a_tiled_map(tiny_bundle):
    levels = [np.zeros((3, 64, 64), np.uint8), np.zeros((1, 32, 32), np.uint8)]
    with pytest.raises(ImageError, match="disagree in channels: level 1 has 1, level 0 has 3"):
        predict_map(tiny_bundle, levels, tile=32, channel_axis=0, options=RunOptions(level=1, channel_axis=0))
