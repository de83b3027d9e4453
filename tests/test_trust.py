"""Issue 17: out-of-distribution scores and calibrated confidence (core.models.ood,
core.evaluation.calibration, core.training.trust) on a tiny texture task."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_cellclass.core.errors import ModelFileError
from napari_cellclass.core.evaluation import calibration
from napari_cellclass.core.inference.predict import predict_records
from napari_cellclass.core.models import ood
from napari_cellclass.core.models.modelfile import load_model, read_header, save_model
from napari_cellclass.core.presets.factory import build_model
from napari_cellclass.core.training.api import fit

CLASSES = ["horizontal", "vertical"]


def stripes(n, seed, size=32):
    """Brightfield-like texture: noisy stripes, horizontal (0) or vertical (1), random gain and offset."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        k = i % 2
        period = rng.uniform(5, 9)
        wave = np.sin(2 * np.pi * np.arange(size) / period + rng.uniform(0, 6.3))
        img = np.broadcast_to(wave[:, None] if k == 0 else wave[None, :], (size, size)) + rng.normal(0, 0.3, (size, size))
        img = rng.uniform(40, 80) * img + rng.uniform(90, 160)
        out.append((np.clip(img, 0, 255).astype(np.uint8)[None], [k], f"s{seed}_{i}"))
    return out


def fluorescence(n, seed, size=32):
    """Another modality: a few bright round nuclei on a dark, nearly empty field."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    out = []
    for _ in range(n):
        img = rng.normal(8, 2, (size, size))
        for _ in range(rng.integers(2, 5)):
            cy, cx, r = rng.uniform(4, size - 4), rng.uniform(4, size - 4), rng.uniform(2.5, 5)
            img += 200 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r ** 2))
        out.append(np.clip(img, 0, 255).astype(np.uint8)[None])
    return out


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    return fit("senescence_cnn", stripes(64, 0), classes=CLASSES, channel_axis=0, input_size=(32, 32),
               pretrained=False, device="cpu", batch_size=8, epochs=8, lr=3e-3, val_fraction=0.34)


def test_training_fits_ood_statistics_and_a_temperature(trained):
    assert trained.ood is not None and trained.ood.means.shape[0] == 2
    cal = trained.calibration
    assert cal is not None and cal["temperature"] > 0 and "validation" in cal["fitted_on"]
    assert cal["nll_after"] <= cal["nll_before"] + 1e-9  # the fit minimises exactly this
    assert trained.provenance["training"]["trust"]["ood"]["fitted_on"].endswith("(cross-fitted)")


def test_flag_fires_on_another_modality_and_not_on_training_like_images(trained):
    like = list(predict_records(trained, [im for im, _, _ in stripes(20, 7)], device="cpu", channel_axis=0))
    other = list(predict_records(trained, fluorescence(10, 3), device="cpu", channel_axis=0))
    assert all(r.ood_score is not None for r in like + other)
    assert sum(r.ood for r in like) <= 4  # ~5 % expected at the 95th percentile; a few more on 20 images
    assert sum(r.ood for r in other) >= 8  # the threshold comes from ~22 validation images: allow a little noise
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score([0] * 20 + [1] * 10, [r.ood_score for r in like + other]) > 0.9


def test_calibration_lowers_nll_on_a_held_out_split():
    """An over-confident classifier (logits 4x too large): a temperature fitted on one
    half lowers NLL and ECE on the other half, and never changes the predicted class."""
    rng = np.random.default_rng(0)
    n, k = 2000, 3
    y = rng.integers(0, k, n)
    true_logits = rng.normal(0, 1, (n, k)) + 1.5 * np.eye(k)[y]
    # labels drawn from the true probabilities, logits reported 4x too sharp
    y = np.array([rng.choice(k, p=p) for p in torch.softmax(torch.from_numpy(true_logits), 1).numpy()])
    z = 4.0 * true_logits
    t = calibration.fit_temperature(z[:1000], y[:1000], "softmax")
    assert 3.0 < t < 5.0
    assert calibration.nll(z[1000:], y[1000:], "softmax", t) < calibration.nll(z[1000:], y[1000:], "softmax") - 0.1
    p0 = torch.softmax(torch.from_numpy(z[1000:]), 1).numpy()
    p1 = torch.softmax(torch.from_numpy(z[1000:] / t), 1).numpy()
    assert calibration.ece(p1, y[1000:]) < calibration.ece(p0, y[1000:])
    assert (p0.argmax(1) == p1.argmax(1)).all()
    np.testing.assert_allclose(calibration.scaled_probabilities(p0, t, "softmax"), p1, atol=1e-3)  # p < 1e-12 is clamped


def test_ece_and_brier_by_hand():
    p = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    y = np.array([0, 1, 1])
    # bins: 0.9 (right), 0.6 (wrong), 0.8 (right): |1-.9|+|0-.6|+|1-.8| over 3
    assert calibration.ece(p, y) == pytest.approx((0.1 + 0.6 + 0.2) / 3)
    assert calibration.brier(p, y) == pytest.approx(np.mean([2 * 0.01, 2 * 0.36, 2 * 0.04]))


def test_model_files_with_and_without_statistics_load(trained, tmp_path):
    with_stats = save_model(trained, tmp_path / "with.safetensors")
    meta = json.loads(read_header(with_stats)["__metadata__"]["napari_cellclass"])
    assert meta["format_version"] == 2 and meta["ood"]["percentile"] == 95.0
    assert meta["ood"]["parts"] == ood.default_parts(trained.network) == trained.ood.part_names
    assert meta["ood"]["parts"][0] == "input" and meta["ood"]["parts"][-1] == "pooled"
    back = load_model(with_stats)
    np.testing.assert_allclose(back.ood.means, trained.ood.means)
    assert back.ood.threshold == pytest.approx(trained.ood.threshold) and back.temperature == trained.temperature
    imgs = [im for im, _, _ in stripes(4, 9)]
    a = [r.ood_score for r in predict_records(trained, imgs, device="cpu", channel_axis=0)]
    b = [r.ood_score for r in predict_records(back, imgs, device="cpu", channel_axis=0)]
    np.testing.assert_allclose(a, b, rtol=1e-4)

    plain = save_model(build_model("senescence_cnn", classes=CLASSES, input_size=(32, 32), pretrained=False),
                       tmp_path / "plain.safetensors")
    assert json.loads(read_header(plain)["__metadata__"]["napari_cellclass"])["format_version"] == 1
    old = load_model(plain)
    assert old.ood is None and old.temperature == 1.0
    rec = next(predict_records(old, imgs[:1], device="cpu", channel_axis=0))
    assert rec.ood_score is None and rec.ood is None
    assert ood.NO_STATS in old.card()


def _tamper(src, dst, change):
    from safetensors.torch import load_file, save_file

    state = load_file(str(src))
    change(state)
    save_file(state, str(dst), metadata=read_header(src)["__metadata__"])
    return dst


@pytest.mark.parametrize("change, why", [
    (lambda s: s.__setitem__("__ood__.part0.means", torch.zeros(3, 5)), "class means of shape (3, 5)"),
    (lambda s: s["__ood__.part1.precision"].__setitem__((0, 0), float("nan")), "not finite"),
    (lambda s: s.__setitem__("__ood__.part2.precision", torch.eye(3)), "precision matrix of shape (3, 3)"),
    (lambda s: s.__setitem__("__ood__.part0.norm", torch.tensor([0.0, -1.0])), "location and a positive scale"),
    (lambda s: s.__setitem__("__ood__.part0.means", torch.zeros(2, 5)), "the network gives 17 for input"),
    (lambda s: s.pop("__ood__.threshold"), "incomplete (missing threshold)"),
    (lambda s: s.pop("__ood__.part1.norm"), "incomplete (missing part1.norm)"),
])
def test_bad_statistics_are_refused_with_a_clear_message(trained, tmp_path, change, why):
    good = save_model(trained, tmp_path / "good.safetensors")
    bad = _tamper(good, tmp_path / "bad.safetensors", change)
    with pytest.raises(ModelFileError, match="bad OOD statistics|OOD statistics are incomplete") as err:
        load_model(bad)
    assert why in str(err.value) and "retrain or fine-tune" in str(err.value)
