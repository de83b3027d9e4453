"""Issue 17, the multi-part OOD score (core.models.ood_parts, core.models.ood_file):
what it reads, first-format files, bad parts refused, and a run without a validation split."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_trust import CLASSES, _tamper, fluorescence, stripes

from napari_cellclass.core.errors import ModelFileError
from napari_cellclass.core.inference.predict import (
    iter_planes_of,
    network_inputs,
    predict_records,
)
from napari_cellclass.core.models import ood, ood_parts
from napari_cellclass.core.models.modelfile import load_model, read_header, save_model
from napari_cellclass.core.presets.factory import build_model
from napari_cellclass.core.training.api import fit


def test_input_features_ignore_exposure_but_see_texture():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(2, 3, 32, 32)).astype(np.float32))
    f = ood_parts.input_features(x)
    assert f.shape == (2, 3 * ood_parts.N_INPUT_FEATURES)
    g = ood_parts.input_features(3.0 * x + 5.0)
    per = ood_parts.N_INPUT_FEATURES
    level_cols = [c * per + i for c in range(3) for i in (8, 9)]  # median and log IQR move; the shape does not
    keep = [i for i in range(f.shape[1]) if i not in level_cols]
    torch.testing.assert_close(f[:, keep], g[:, keep], atol=1e-4, rtol=1e-4)
    smooth = torch.nn.functional.avg_pool2d(x, 5, 1, 2)  # same pixels blurred: the gradient statistics change
    assert not torch.allclose(ood_parts.input_features(smooth)[:, keep], f[:, keep], atol=0.05)


def test_stage_modules_of_a_timm_backbone_and_a_conv_stack():
    res = build_model("resnet18", classes=CLASSES, input_size=(32, 32), pretrained=False).network
    stages = ood_parts.stage_modules(res)
    assert len(stages) == ood_parts.MAX_STAGES and stages[-1] == "backbone.layer4"
    cnn = build_model("senescence_cnn", classes=CLASSES, input_size=(32, 32), pretrained=False).network
    assert ood_parts.stage_modules(cnn) == ["features.1", "features.4", "features.7"]
    _, feats = ood_parts.logits_and_parts(cnn.eval(), torch.zeros(2, 3, 32, 32), ood_parts.default_parts(cnn))
    assert feats["stage:features.1"].shape == (2, 12) and feats["pooled"].shape == (2, 24)


@pytest.fixture
def legacy_model(trained_once):
    """The trained model with first-format statistics: one part, the pooled features."""
    bundle = trained_once
    items = list(iter_planes_of([im for im, _, _ in stripes(24, 5)], bundle.in_chans, 0))
    x = network_inputs(bundle, [it.plane for it in items], [it.value_max for it in items], torch.device("cpu"))
    with torch.no_grad():
        _, pooled = ood.logits_and_pooled(bundle.network.eval(), x)
    old = bundle.ood
    bundle.ood = ood.fit_stats(pooled[:16].numpy(), np.arange(16) % 2, 2, pooled[16:].numpy(), fitted_on="8 images")
    yield bundle
    bundle.ood = old


@pytest.fixture(scope="module")
def trained_once():
    torch.manual_seed(0)
    return fit("senescence_cnn", stripes(48, 0), classes=CLASSES, channel_axis=0, input_size=(32, 32),
               pretrained=False, device="cpu", batch_size=8, epochs=4, lr=3e-3, val_fraction=0.34)


def test_first_format_files_load_score_as_before_and_say_so(legacy_model, tmp_path):
    path = save_model(legacy_model, tmp_path / "v1stats.safetensors")
    header = read_header(path)
    assert "__ood__.means" in header and not any(k.startswith("__ood__.part") for k in header)
    back = load_model(path)
    assert back.ood.legacy and back.ood.part_names == ["pooled"] and "older kind" in back.card()
    imgs = [im for im, _, _ in stripes(4, 9)]
    a = [r.ood_score for r in predict_records(legacy_model, imgs, device="cpu", channel_axis=0)]
    b = [r.ood_score for r in predict_records(back, imgs, device="cpu", channel_axis=0)]
    np.testing.assert_allclose(a, b, rtol=1e-4)
    bad = _tamper(path, tmp_path / "bad.safetensors", lambda s: s.__setitem__("__ood__.means", torch.zeros(3, 5)))
    with pytest.raises(ModelFileError, match=r"class means of shape \(3, 5\)"):
        load_model(bad)


def test_a_part_naming_a_missing_layer_is_refused(trained_once, tmp_path):
    from safetensors.torch import load_file, save_file

    good = save_model(trained_once, tmp_path / "good.safetensors")
    meta = read_header(good)["__metadata__"]
    inner = json.loads(meta["napari_cellclass"])
    inner["ood"]["parts"][1] = "stage:features.99"
    save_file(load_file(str(good)), str(tmp_path / "bad.safetensors"), metadata={**meta, "napari_cellclass": json.dumps(inner)})
    with pytest.raises(ModelFileError, match="names a layer this network does not have") as err:
        load_model(tmp_path / "bad.safetensors")
    assert "retrain or fine-tune" in str(err.value)


def test_a_stage_of_another_width_is_refused_when_scoring(trained_once):
    stats = trained_once.ood
    part = stats.parts[1]
    with pytest.raises(ModelFileError, match=f"{part.name} has {part.means.shape[1]} features"):
        part.distance(np.zeros((2, part.means.shape[1] + 1)))


def test_a_run_without_validation_split_cross_fits_on_its_training_images():
    """The --arch recipe: no validation split, so no temperature (the card says so); the
    OOD parts are cross-fitted on the training images and the flag still separates."""
    torch.manual_seed(1)
    b = fit("senescence_cnn", stripes(64, 2), classes=CLASSES, channel_axis=0, input_size=(32, 32),
            pretrained=False, device="cpu", batch_size=8, epochs=6, lr=3e-3, val_fraction=0.0)
    assert b.calibration is None and b.temperature == 1.0
    assert "no validation split, cross-fitted" in b.ood.fitted_on
    assert "uncalibrated" in b.card()
    like = list(predict_records(b, [im for im, _, _ in stripes(20, 8)], device="cpu", channel_axis=0))
    other = list(predict_records(b, fluorescence(10, 4), device="cpu", channel_axis=0))
    assert sum(r.ood for r in like) <= 5 and sum(r.ood for r in other) >= 9
