"""Issue 17 through the command line: `cellclass predict` fills the ood_score / ood
columns and `cellclass evaluate` reports ECE / Brier before and after the stored
temperature.  The model is built, not trained (fast): its OOD statistics are fitted
here on its own pooled features, its temperature is set by hand."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from skimage.io import imsave

from napari_cellclass.cli import main
from napari_cellclass.core.evaluation import calibration
from napari_cellclass.core.inference.predict import network_inputs
from napari_cellclass.core.models import ood
from napari_cellclass.core.models.modelfile import save_model
from napari_cellclass.core.presets.factory import build_model

CLASSES = ["dim", "bright"]


def _images(n, seed):
    rng = np.random.default_rng(seed)
    return [rng.integers(*((0, 100) if i % 2 == 0 else (150, 255)), (32, 32)).astype(np.uint8) for i in range(n)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("trustcli") / "data"
    for i, img in enumerate(_images(12, 1)):
        (root / CLASSES[i % 2]).mkdir(parents=True, exist_ok=True)
        imsave(root / CLASSES[i % 2] / f"im{i:02d}.png", img, check_contrast=False)
    return root


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    bundle = build_model("senescence_cnn", classes=CLASSES, input_size=(32, 32), pretrained=False, in_chans=1)
    bundle.network.eval()
    x = network_inputs(bundle, [im[None] for im in _images(24, 2)], [255.0] * 24, torch.device("cpu"))
    with torch.no_grad():
        _, pooled = ood.logits_and_pooled(bundle.network, x)
    f = pooled.numpy()
    bundle.ood = ood.fit_stats(f[:16], np.arange(16) % 2, 2, f[16:], fitted_on="8 test images")
    bundle.calibration = {"temperature": 2.5, "method": "temperature", "fitted_on": "set by the test"}
    return save_model(bundle, tmp_path_factory.mktemp("m") / "trust.safetensors")


def test_predict_csv_carries_ood_score_and_flag(model_file, folder, tmp_path):
    out = tmp_path / "p.csv"
    assert main(["predict", str(model_file), str(folder), "--csv", str(out), "--no-progress", "--device", "cpu"]) == 0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12 and list(rows[0])[-3:] == ["ood_score", "ood", "model"]
    from napari_cellclass.core.models.modelfile import load_model

    thr = load_model(model_file).ood.threshold
    for r in rows:
        score = float(r["ood_score"])
        assert np.isfinite(score) and r["ood"] == ("true" if score > thr else "false")


def test_evaluate_reports_ece_and_brier_before_and_after(model_file, folder, tmp_path, capsys):
    js = tmp_path / "m.json"
    assert main(["evaluate", str(model_file), str(folder), "--json", str(js), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "calibration (temperature 2.5): ECE" in text and "Brier" in text and "out of distribution:" in text
    m = json.loads(js.read_text())
    cal = m["calibration"]
    assert cal["temperature"] == 2.5 and m["ood"]["n"] == 12
    # "after" are the probabilities predict gives; "before" undoes the temperature
    from napari_cellclass.core.evaluation.evaluate import evaluation_data
    from napari_cellclass.core.models.modelfile import load_model

    ev = evaluation_data(load_model(model_file), folder, device="cpu")
    before = calibration.scaled_probabilities(ev.probs, 1 / 2.5, "softmax")
    assert cal["ece_after"] == pytest.approx(calibration.ece(ev.probs, ev.y_single()))
    assert cal["ece_before"] == pytest.approx(calibration.ece(before, ev.y_single()), abs=1e-6)
    assert cal["brier_before"] == pytest.approx(calibration.brier(before, ev.y_single()), abs=1e-6)
    assert all(c is None or 0.0 <= c <= 1.0 for c in cal["reliability"]["confidence"])


def test_report_draws_a_reliability_diagram(model_file, folder, tmp_path, capsys):
    out = tmp_path / "figs"
    assert main(["report", str(model_file), str(folder), "--out", str(out), "--device", "cpu"]) == 0
    assert "reliability.png" in {p.rsplit("/", 1)[-1] for p in capsys.readouterr().out.split()}
    from skimage.io import imread

    img = imread(out / "reliability.png")
    assert img.shape[0] > 500 and img[..., :3].std() > 5  # a drawn figure, not a blank canvas
    m = json.loads((out / "metrics.json").read_text())
    assert m["calibration"]["temperature"] == 2.5 and m["ood"]["n"] == 12
