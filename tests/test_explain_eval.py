"""Scores of explanation maps (core.explain.evaluate / localisation) and the two CLI commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_cellclass import build_model, save_model
from napari_cellclass.cli import main
from napari_cellclass.core.explain import faithfulness as E
from napari_cellclass.core.explain import explain

from test_explain import blob_image, brightness_model


def test_pointing_game_iou_and_pxap_on_known_maps():
    mask = np.zeros((64, 64), bool)
    mask[20:30, 20:30] = True
    perfect = mask.astype(np.float32)
    assert E.pointing_hit(perfect, mask)
    far = np.zeros((64, 64), np.float32)
    far[29, 29 + 15] = 1.0  # 15 px right of the mask: inside the tolerance
    assert E.pointing_hit(far, mask, 15)
    far[29, 29 + 15] = 0.0
    far[29, 29 + 17] = 1.0
    assert not E.pointing_hit(far, mask, 15)
    assert E.mask_iou(perfect, mask, 0.5) == 1.0
    assert E.mask_iou(np.ones((64, 64)), mask, 0.5) == pytest.approx(100 / 64 ** 2)
    assert E.pxap([perfect], [mask]) == pytest.approx(1.0)
    flat = E.pxap([np.full((64, 64), 0.3)], [mask])
    assert flat == pytest.approx(mask.mean())  # an uninformative map scores the base rate
    thr, iou = E.choose_threshold([perfect * 0.6], [mask])
    assert iou == 1.0 and thr <= 0.6


def test_randomised_weights_sanity_check_changes_the_map():
    b = brightness_model()
    imgs = [blob_image(32, 32, 10 + 4 * i, 20, r=4) for i in range(3)]
    before = {k: v.clone() for k, v in b.network.state_dict().items()}
    s = E.sanity_check(b, imgs, "gradcam", targets=["object"] * 3)
    assert s["passes"] and s["spearman_mean"] < 0.5
    assert all(torch.equal(before[k], v) for k, v in b.network.state_dict().items())  # the original is untouched
    r = E.randomised_copy(b)
    assert not torch.equal(r.network.features[0].weight, b.network.features[0].weight)


def test_deletion_and_insertion_reward_the_right_map():
    b = brightness_model()
    img = blob_image(32, 32, 16, 16, r=6)
    m = explain(b, img, "gradcam", target="object").maps[0]
    plane = np.moveaxis(img, -1, 0)
    good_del, good_ins = E.deletion_insertion(b, plane, m, 1, steps=8)
    bad_del, bad_ins = E.deletion_insertion(b, plane, 1.0 - m, 1, steps=8)
    assert good_del < bad_del and good_ins > bad_ins


# ------------------------------------------------------------------ CLI
def test_cli_explain_writes_aligned_tiff_and_png(tmp_path, capsys):
    import tifffile
    from skimage.io import imread, imsave

    model = save_model(build_model("scaffoldnet", classes=["x", "y", "z"], input_size=(32, 32)), tmp_path / "m.safetensors")
    img = np.random.default_rng(0).integers(0, 255, (40, 70, 3), dtype=np.uint8)
    imsave(tmp_path / "cells.png", img, check_contrast=False)
    out = tmp_path / "maps"
    assert main(["explain", str(model), str(tmp_path / "cells.png"), "--target", "all", "--method", "gradcam++",
                 "--out", str(out), "--device", "cpu"]) == 0
    with tifffile.TiffFile(out / "cells.gradcam++.tif") as tf:
        maps = tf.asarray()
        meta = json.loads(tf.pages[0].description)
    assert maps.shape == (3, 40, 70) and maps.dtype == np.float32 and 0 <= maps.min() and maps.max() <= 1
    assert meta["classes"] == ["x", "y", "z"] and meta["method"] == "gradcam++" and meta["source"].endswith("cells.png")
    png = imread(out / "cells.gradcam++.png")
    assert png.shape == (40, 3 * 70, 3)  # one panel per map
    assert main(["explain", str(model), str(tmp_path / "cells.png"), "--tile", "32", "--target", "y",
                 "--out", str(out), "--device", "cpu"]) == 0
    with tifffile.TiffFile(out / "cells.gradcam.tif") as tf:
        assert tf.asarray().shape == (1, 40, 70) and json.loads(tf.pages[0].description)["tiles"]["n_tiles"] >= 2


def test_cli_explain_bad_input_is_one_line(tmp_path, capsys):
    from skimage.io import imsave

    model = save_model(build_model("scaffoldnet", classes=["x", "y"], input_size=(32, 32)), tmp_path / "m.safetensors")
    imsave(tmp_path / "a.png", np.zeros((32, 32, 3), np.uint8), check_contrast=False)
    assert main(["explain", str(model), str(tmp_path / "a.png"), "--target", "nope", "--out", str(tmp_path / "o")]) == 2
    assert "no class 'nope'" in capsys.readouterr().err
    assert main(["explain", str(model), str(tmp_path / "a.png"), "--method", "fcn", "--out", str(tmp_path / "o")]) == 2
    assert "FCN" in capsys.readouterr().err


def test_cli_explain_eval_reads_the_synth_protein_layout(tmp_path):
    from napari_cellclass.core.synth import write_dataset

    classes = ["nucleus", "cytosol", "plasma membrane"]
    data = write_dataset("protein", tmp_path / "data", 6, size=(48, 48), classes=classes)
    model = save_model(build_model("protein_fcn", classes=classes, in_chans=4, output="sigmoid", input_size=(48, 48)),
                       tmp_path / "fcn.safetensors")
    out = tmp_path / "scores.json"
    assert main(["explain-eval", str(model), str(data), "--masks", str(data / "masks"), "--json", str(out),
                 "--methods", "fcn,gradcam,cam", "--deletion-pairs", "2", "--sanity-images", "1", "--device", "cpu"]) == 0
    scores = json.loads(out.read_text())
    assert scores["n_images"] == 6 and scores["n_val"] + scores["n_test"] == 6
    for method in ("fcn", "gradcam", "cam"):
        s = scores["methods"][method]
        for key in ("pointing_game", "iou", "pxap", "deletion_auc", "insertion_auc"):
            assert 0.0 <= s[key] <= 1.0, (method, key, s[key])
        assert s["n_pairs_test"] > 0 and "spearman_mean" in s["sanity"]
    cnn = save_model(build_model("protein_cnn", classes=classes, in_chans=4, output="sigmoid", input_size=(48, 48)),
                     tmp_path / "cnn.safetensors")
    assert main(["explain-eval", str(cnn), str(data), "--json", str(out), "--methods", "cam,fcn",
                 "--deletion-pairs", "0", "--sanity-images", "0", "--device", "cpu"]) == 0
    errors = json.loads(out.read_text())["methods"]
    assert "hidden layers" in errors["cam"]["error"] and "FCN" in errors["fcn"]["error"]
