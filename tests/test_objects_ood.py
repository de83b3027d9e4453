"""Per-object OOD: every object row carries ood_score / ood as image rows do (core.models.ood)."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np

from napari_cellclass import predict_objects
from napari_cellclass.core.inference.predict import predict_records
from napari_cellclass.core.models.ood import OodStats, feature_dim


def _with_stats(bundle, rng, threshold: float):
    d = feature_dim(bundle.network)
    stats = OodStats(rng.normal(size=(len(bundle.classes), d)).astype(np.float32), np.eye(d, dtype=np.float32), threshold)
    return dataclasses.replace(bundle, ood=stats)


def test_object_rows_carry_the_image_rows_ood_score(tiny_bundle, rng):
    img = rng.integers(0, 255, (40, 50, 3)).astype(np.uint8)
    lab = np.zeros((40, 50), np.int32)
    lab[2:12, 3:14], lab[20:35, 25:45] = 1, 2
    crops = [img[2:12, 3:14], img[20:35, 25:45]]
    plain = [r.ood_score for r in predict_records(_with_stats(tiny_bundle, np.random.default_rng(1), 0.0), crops)]
    threshold = float(np.mean(plain))  # one object above, one below
    bundle = _with_stats(tiny_bundle, np.random.default_rng(1), threshold)
    table = predict_objects(bundle, img, lab)
    scores = [r.ood_score for r in table.rows]
    np.testing.assert_allclose(scores, plain, rtol=1e-5)  # the crop of an object scores as that crop would
    assert [r.ood for r in table.rows] == [s > threshold for s in plain] and sorted([r.ood for r in table.rows]) == [False, True]
    cols = table.columns()
    np.testing.assert_allclose(cols["ood_score"].astype(float), plain, rtol=1e-5)
    assert list(cols["ood"]) == [r.ood for r in table.rows]


def test_without_statistics_the_columns_say_not_measured(tiny_bundle, rng):
    img = rng.integers(0, 255, (30, 30, 3)).astype(np.uint8)
    table = predict_objects(tiny_bundle, img, np.ones((30, 30), np.uint8))
    assert tiny_bundle.ood is None and table.rows[0].ood_score is None and table.rows[0].ood is None
    assert list(table.columns()["ood"]) == [None]


def test_cli_object_csv_has_ood_columns(tiny_bundle, tmp_path, rng, capsys):
    import tifffile

    from napari_cellclass import save_model
    from napari_cellclass.cli import main

    model = save_model(_with_stats(tiny_bundle, rng, 1.0), tmp_path / "m.safetensors")
    img = rng.integers(0, 255, (30, 40, 3)).astype(np.uint8)
    lab = np.zeros((30, 40), np.uint16)
    lab[3:12, 4:15], lab[15:28, 20:38] = 1, 2
    tifffile.imwrite(tmp_path / "a.tif", img)
    tifffile.imwrite(tmp_path / "a_labels.tif", lab)
    out = tmp_path / "o.csv"
    assert main(["predict", str(model), str(tmp_path / "a.tif"), "--objects", str(tmp_path / "a_labels.tif"),
                 "--csv", str(out), "--no-progress"]) == 0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 and all(float(r["ood_score"]) > 0 and r["ood"] in ("true", "false") for r in rows)
    assert "no OOD statistics" not in capsys.readouterr().err
