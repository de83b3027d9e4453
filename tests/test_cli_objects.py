"""`cellclass predict MODEL IMAGES... --objects LABELS --csv OUT` end to end."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile
from skimage.io import imsave

from napari_cellclass import load_model, predict_objects
from napari_cellclass.cli import main


def _labels(n: int) -> np.ndarray:
    lab = np.zeros((40, 52), np.uint16)
    for i in range(n):
        lab[2 + 9 * i:8 + 9 * i, 3 + 5 * i:12 + 5 * i] = i + 1
    return lab


@pytest.fixture
def pair_folders(tmp_path, rng):
    imgs, labs = tmp_path / "imgs", tmp_path / "labels"
    imgs.mkdir()
    labs.mkdir()
    for i, n in enumerate((3, 0, 2)):
        imsave(imgs / f"img{i}.png", rng.integers(0, 255, (40, 52, 3)).astype(np.uint8))
        tifffile.imwrite(labs / (f"img{i}_masks.tif" if i == 2 else f"img{i}.tif"), _labels(n))
    return imgs, labs


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_objects_folder_round_trip_and_resume(tiny_model_file, pair_folders, tmp_path, capsys):
    imgs, labs = pair_folders
    out = tmp_path / "objects.csv"
    cmd = ["predict", str(tiny_model_file), str(imgs), "--objects", str(labs), "--csv", str(out),
           "--object-margin", "2", "--object-mask", "--batch-size", "2"]
    assert main(cmd) == 0
    rows = _rows(out)
    assert list(rows[0]) == ["path", "frame", "label", "centroid_y", "centroid_x", "area", "predicted_class",
                             "confidence", "p_a", "p_b", "p_c", "ood_score", "ood", "model"]
    assert [(r["path"].rsplit("/", 1)[-1], r["label"]) for r in rows] == [
        ("img0.png", "1"), ("img0.png", "2"), ("img0.png", "3"), ("img2.png", "1"), ("img2.png", "2")]
    # the same numbers as the Python API
    table = predict_objects(load_model(tiny_model_file), imgs / "img0.png", _labels(3), margin=2, mask=True)
    np.testing.assert_allclose([float(r["p_b"]) for r in rows[:3]], table.probs[:, 1], atol=2e-6)
    assert rows[0]["area"] == "54" and rows[0]["model"] == tiny_model_file.name

    # a torn run: the last image half written, plus a torn line -> the rerun redoes that image only
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:5]) + "/x/img2.png,0,1")
    capsys.readouterr()
    assert main(cmd) == 0
    assert "1 of 3 images already in" in capsys.readouterr().err
    again = _rows(out)
    assert [(r["path"], r["label"], r["p_a"]) for r in again] == [(r["path"], r["label"], r["p_a"]) for r in rows]


def test_single_label_image_and_bad_inputs(tiny_model_file, pair_folders, tmp_path, capsys):
    imgs, labs = pair_folders
    out = tmp_path / "one.csv"
    assert main(["predict", str(tiny_model_file), str(imgs / "img0.png"), "--objects", str(labs / "img0.tif"),
                 "--csv", str(out)]) == 0
    assert len(_rows(out)) == 3
    # one label image for three images: refused with the fix
    assert main(["predict", str(tiny_model_file), str(imgs), "--objects", str(labs / "img0.tif")]) != 0
    assert "one label image but 3 images" in capsys.readouterr().err
    # a label image of another shape: that image is skipped with the reason, the others classified
    tifffile.imwrite(labs / "img0.tif", np.ones((10, 10), np.uint8))
    assert main(["predict", str(tiny_model_file), str(imgs), "--objects", str(labs), "--csv", str(tmp_path / "b.csv")]) == 2
    err = capsys.readouterr().err
    assert "img0.png" in err and "shape (10, 10)" in err and len(_rows(tmp_path / "b.csv")) == 2
    # an image without a label image is reported
    (labs / "img2_masks.tif").unlink()
    assert main(["predict", str(tiny_model_file), str(imgs), "--objects", str(labs), "--csv", str(tmp_path / "c.csv")]) == 2
    assert "img2.png: no label image" in capsys.readouterr().err
