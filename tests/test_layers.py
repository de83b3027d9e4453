"""layers.py and tables.py: core results → layer data and tables, without a viewer."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from napari_cellclass.app import layer_data as L
from napari_cellclass.core.io.images import guess_layout
from napari_cellclass.core.inference.tiling import tile_grid
from napari_cellclass.app.tables import PredictionTable, layer_predictions


def _src(shape, scale, translate, rgb=False, name="img"):
    return L.SourceInfo(name, tuple(shape), rgb, tuple(float(s) for s in scale), tuple(float(t) for t in translate))


def test_map_of_the_image_size_takes_the_source_placement():
    src = _src((40, 60), (0.5, 2.0), (10.0, -3.0))
    layout = guess_layout(src.shape)
    data, scale, translate = L.place_map(np.ones((40, 60)), src, layout)
    assert data.shape == (40, 60)
    assert scale == (0.5, 2.0) and translate == (10.0, -3.0)


def test_coarse_map_cells_are_centred_on_the_pixels_they_cover():
    src = _src((40, 60), (1.0, 1.0), (0.0, 0.0))
    data, scale, translate = L.place_map(np.ones((4, 6)), src, guess_layout(src.shape))
    assert scale == (10.0, 10.0)
    # cell 0 covers pixels 0..9, whose centre is 4.5 in napari's pixel-centre coordinates
    assert translate == (4.5, 4.5)


def test_rgb_source_drops_the_colour_axis():
    src = _src((32, 48, 3), (2.0, 3.0), (1.0, 1.0), rgb=True)
    layout = guess_layout(src.shape, rgb=True)
    data, scale, translate = L.place_map(np.zeros((32, 48)), src, layout)
    assert data.shape == (32, 48) and scale == (2.0, 3.0) and translate == (1.0, 1.0)


def test_stack_map_sits_on_its_frame_only():
    src = _src((5, 32, 32), (4.0, 1.0, 1.0), (100.0, 0.0, 0.0))
    layout = guess_layout(src.shape, "none")
    data, scale, translate = L.place_map(np.zeros((32, 32)), src, layout, frame=3)
    assert data.shape == (1, 32, 32)
    assert scale == (4.0, 1.0, 1.0)
    assert translate == (100.0 + 3 * 4.0, 0.0, 0.0)


def test_multichannel_map_is_shown_on_every_channel():
    src = _src((2, 4, 32, 32), (1.0, 1.0, 0.5, 0.5), (0.0, 0.0, 5.0, 5.0))
    layout = guess_layout(src.shape)  # (T, C, H, W)
    m = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    data, scale, translate = L.place_map(m, src, layout, frame=1)
    assert data.shape == (1, 4, 32, 32)
    np.testing.assert_array_equal(data[0, 2], m)
    assert translate == (1.0, 0.0, 5.0, 5.0) and scale == src.scale


def test_probability_map_composes_tile_grid_with_source_scale():
    src = _src((100, 120), (2.0, 2.0), (7.0, -1.0))
    layout = guess_layout(src.shape)
    grid = tile_grid((100, 120), 32, 0.5)
    prob = np.random.default_rng(1).random((2, *grid.map_hw)).astype(np.float32)
    out = L.probability_map_layers(prob, grid, ["a", "b"], src, layout)
    assert [kw["name"] for _, kw, _ in out] == ["p(a) · img", "p(b) · img"]
    (sy, sx), (ty, tx) = grid.scale_translate()
    data, kw, kind = out[1]
    assert kind == "image" and data.shape == grid.map_hw
    assert kw["scale"] == (2.0 * sy, 2.0 * sx)
    assert kw["translate"] == (7.0 + 2.0 * ty, -1.0 + 2.0 * tx)
    assert kw["blending"] == "additive" and kw["contrast_limits"] == (0.0, 1.0)
    np.testing.assert_allclose(data, prob[1])


def test_explanation_layers_one_layer_with_a_class_axis_clipped_named_and_styled():
    src = _src((32, 40), (1.0, 1.0), (0.0, 0.0), name="cells")
    maps = np.stack([np.full((32, 40), 1.5), np.full((32, 40), -0.2)]).astype(np.float32)
    result = SimpleNamespace(maps=maps, class_names=["round", "spread"], method="gradcam",
                             metadata=lambda: {"method": "gradcam", "layers": ["features.3"], "effective_resolution_px": [8.0, 8.0]})
    [(data, kw, kind)] = L.explanation_layers(result, src, guess_layout(src.shape))
    assert kw["name"] == "Grad-CAM all classes · cells" and kind == "image"
    assert data.shape == (2, 32, 40) and kw["scale"] == (1.0, 1.0, 1.0) and kw["translate"] == (0.0, 0.0, 0.0)
    assert data[0].max() == 1.0 and data[1].min() == 0.0  # values in [0, 1]
    # normal blending (additive washed the image out), half opaque
    assert kw["colormap"] == L.CAM_COLORMAP and kw["blending"] == "translucent" and 0.3 <= kw["opacity"] <= 0.7
    meta = kw["metadata"]["cellclass"]
    assert meta["layers"] == ["features.3"] and meta["source"] == "cells"
    assert meta["axis_classes"] == ["round", "spread"] and meta["class_axis"] == 0


def test_the_class_axis_puts_the_top_class_first_and_keeps_the_source_axes():
    src = _src((3, 8, 8), (1.0, 2.0, 2.0), (0.0, 1.0, 1.0), name="nlo")  # a channel slider
    maps = np.stack([np.full((4, 4), v, np.float32) for v in (0.1, 0.2, 0.3)])
    result = SimpleNamespace(maps=maps, class_names=["a", "b", "c"], method="gradcam",
                             probabilities=np.array([0.2, 0.7, 0.1]))
    [(data, kw, _)] = L.explanation_layers(result, src, guess_layout(src.shape))
    assert kw["metadata"]["cellclass"]["axis_classes"] == ["b", "a", "c"]
    assert data.shape == (3, 3, 4, 4) and kw["scale"] == (1.0, 1.0, 4.0, 4.0)
    np.testing.assert_allclose(data[:, 2, 0, 0], [0.2, 0.1, 0.3])  # class order, on every channel
    one = SimpleNamespace(maps=maps[:1], class_names=["a"], method="gradcam")
    [(data1, kw1, _)] = L.explanation_layers(one, src, guess_layout(src.shape))
    assert data1.shape == (3, 4, 4) and kw1["name"] == "Grad-CAM a · nlo"  # one class: no class axis


def test_channel_grid_pairs_each_channel_with_its_maps():
    src = _src((3, 32, 32), (1.0, 2.0, 2.0), (0.0, 1.0, 1.0), name="nlo")
    layout = guess_layout(src.shape)
    plane = np.random.default_rng(2).random((3, 32, 32)).astype(np.float32)
    result = SimpleNamespace(maps=np.ones((1, 32, 32), np.float32), class_names=["senescent"], method="gradcam")
    out = L.channel_grid_layers(plane, ["SRS", "TPEF", "trans"], result, src, layout)
    assert [kw["name"] for _, kw, _ in out] == [
        "SRS · nlo", "SRS: Grad-CAM senescent · nlo",
        "TPEF · nlo", "TPEF: Grad-CAM senescent · nlo",
        "trans · nlo", "trans: Grad-CAM senescent · nlo",
    ]
    for data, kw, _ in out:
        assert data.shape == (32, 32) and kw["scale"] == (2.0, 2.0) and kw["translate"] == (1.0, 1.0)
    np.testing.assert_array_equal(out[2][0], plane[1])
    # several classes: still one map layer per channel, with a class axis
    many = SimpleNamespace(maps=np.ones((5, 32, 32), np.float32), class_names=list("abcde"), method="gradcam")
    out = L.channel_grid_layers(plane, ["SRS", "TPEF", "trans"], many, src, layout)
    assert len(out) == 6 and [d.shape for d, _, _ in out[1::2]] == [(5, 32, 32)] * 3


def test_names_round_trip_through_the_prediction_shown_in_them():
    shown = L.predicted_name("cells", "EFO-21", 0.934)
    assert shown == "cells · EFO-21 (93%)"
    meta = {L.META_KEY: {"base_name": "cells", "shown_name": shown}}
    assert L.base_name(shown, meta) == "cells"
    assert L.base_name("renamed by user", meta) == "renamed by user"


def test_frame_under_the_slider_is_clipped_to_the_stack():
    layout = guess_layout((6, 32, 32), "none")
    assert L.frame_of(layout, (2.4, 0.0, 0.0)) == 2
    assert L.frame_of(layout, (9.0, 0.0, 0.0)) == 5
    assert L.frame_of(guess_layout((32, 32)), (3.0, 3.0)) == 0


def test_table_csv_is_written_atomically_with_cli_columns(tmp_path):
    table = PredictionTable(["a", "b"], "m.safetensors")
    table.add("x", 0, "b", [0.25, 0.75])
    table.add("x", 1, "a", [0.9, 0.1], 12.5, True)
    table.add("y", 0, "a", [0.6, 0.4])
    table.replace_layer("y", [table.rows[-1]])  # re-run of y: not duplicated
    path = table.write_csv(tmp_path / "out" / "pred")
    assert path.name == "pred.csv"
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["layer", "frame", "predicted_class", "confidence", "p_a", "p_b", "ood_score", "ood", "model"]
    assert len(rows) == 4 and rows[1][:4] == ["x", "0", "b", "0.750000"]
    assert rows[1][6:8] == ["", ""] and rows[2][6:8] == ["12.5000", "true"]  # like cellclass predict's CSV
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp file left
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # like any new file, not mkstemp's 0600
    part = layer_predictions(table, "x")
    assert part["predictions"]["frame"] == [0, 1] and part["classes"] == ["a", "b"]
    assert part["predictions"]["ood"] == [None, True]


def test_layers_and_tables_import_neither_qt_nor_napari_nor_torch():
    code = ("import sys, napari_cellclass.app.layer_data, napari_cellclass.app.tables, napari_cellclass.app.jobs; "
            "bad = [m for m in ('torch', 'timm', 'napari', 'qtpy', 'PyQt6') if m in sys.modules]; "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_bad_map_shape_is_rejected():
    src = _src((32, 32), (1.0, 1.0), (0.0, 0.0))
    with pytest.raises(ValueError):
        L.place_map(np.zeros((2, 32, 32)), src, guess_layout(src.shape))
