"""core.explain: the Grad-CAM family, CAM and FCN maps, on tiny CPU models."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from napari_cellclass import build_model
from napari_cellclass.core.models.bundle import ModelBundle
from napari_cellclass.core.errors import CellclassError
from napari_cellclass.core.explain import METHODS, explain, explain_batch, explain_steps
from napari_cellclass.core.explain.target_layers import default_layer, layer_names
from napari_cellclass.core.models.heads import HeadSpec
from napari_cellclass.core.models.registry import ARCHITECTURES
from napari_cellclass.core.models.spec import ArchSpec
from napari_cellclass.core.io.preprocess import Normalization, Preprocess
from test_train import _run  # drains a generator: (events, result)

GRADIENT = ("gradcam", "gradcam++", "layercam", "hirescam")


def n_hooks(net: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks) for m in net.modules())


def linear_convstack(widths=(8, 8), input_size=(32, 32), classes=("a", "b"), resize="squash") -> ModelBundle:
    """ScaffoldNet-like conv stack with a pool → linear head (CAM is defined)."""
    spec = ArchSpec("convstack", "tiny", HeadSpec(pool="avg"), (("pool_between", False), ("widths", widths)))
    pre = Preprocess(input_size, resize, "bilinear", Normalization("divide", divisor=255.0))
    return build_model_from(spec, list(classes), pre)


def build_model_from(spec: ArchSpec, classes: list[str], pre: Preprocess, in_chans: int = 3) -> ModelBundle:
    from napari_cellclass.core.models.registry import build_network

    torch.manual_seed(0)
    net = build_network(spec.canonical(), in_chans, len(classes), "softmax").eval()
    return ModelBundle(net, classes, "softmax", in_chans, pre, spec.canonical())


def brightness_model(input_size=(32, 32), resize="squash") -> ModelBundle:
    """Hand-built evidence: class 'object' scores the bright pixels, 'background' the opposite."""
    b = linear_convstack(widths=(1,), input_size=input_size, classes=("background", "object"), resize=resize)
    conv, fc = b.network.features[0], b.network.head.fc
    with torch.no_grad():
        conv.weight.fill_(1.0 / 27)  # mean of a 3x3 neighbourhood over the 3 channels
        conv.bias.fill_(-0.5)        # only pixels brighter than half range count
        fc.weight.copy_(torch.tensor([[-1.0], [1.0]]))
        fc.bias.zero_()
    return b


def blob_image(h, w, cy, cx, r=6, value=250, bg=20) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    img = np.full((h, w, 3), bg, np.uint8)
    img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = value
    return img


def rgb(seed=0, shape=(40, 56, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# ------------------------------------------------------------------ every method on every family
def _family_bundle(name: str) -> ModelBundle:
    entry = ARCHITECTURES[name]
    size = max(entry.min_input, 64 if entry.spec.family == "timm" else 32)
    protein = entry.spec.family.startswith("protein")
    return build_model(name, classes=["a", "b", "c"], in_chans=4 if protein else 3, input_size=(size, size),
                       output="sigmoid" if protein else "softmax", pretrained=False)


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_every_method_on_every_family(arch):
    b = _family_bundle(arch)
    h, w = b.input_size[0] + 7, b.input_size[1] + 13
    img = np.random.default_rng(0).random((b.in_chans, h, w)).astype(np.float32)
    with torch.no_grad():
        grid = tuple(b.network.forward_features(torch.zeros(1, b.in_chans, *b.input_size)).shape[-2:])
    auto = default_layer(b.network)
    assert layer_names(b.network)[0] == auto
    for method in METHODS:
        expect_ok = method in GRADIENT or (method == "fcn" and b.is_fcn) or (
            method == "cam" and (b.is_fcn or (not b.arch.head.hidden and "mobilenetv3" not in arch)))
        if not expect_ok:
            with pytest.raises(CellclassError, match="Grad-CAM|gradcam"):
                explain(b, img, method, target="all")
            continue
        r = explain(b, img, method, target="all")
        assert r.maps.shape == (3, h, w) and r.maps.dtype == np.float32, method
        assert np.isfinite(r.maps).all() and r.maps.min() >= 0 and r.maps.max() <= 1
        assert r.feature_grid == grid, (method, r.feature_grid, grid)
        assert r.layer == (None if method == "fcn" else auto)
        assert r.class_names == ["a", "b", "c"] and r.probabilities.shape == (3,)
        assert r.effective_resolution[0] == pytest.approx(h / grid[0]) and r.metadata()["effective_resolution_px"]


# ------------------------------------------------------------------ definitions
def test_gradcam_equals_the_hand_computed_definition():
    b = linear_convstack(widths=(4, 6))
    img = rgb(1, (32, 32, 3))
    x = torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255.0
    acts = b.network.features(x).detach().requires_grad_(True)
    score = b.network.forward_head(acts)[0, 1]
    (g,) = torch.autograd.grad(score, acts)
    cam = torch.relu((g.mean(dim=(2, 3))[:, :, None, None] * acts).sum(1))[0].detach().numpy()
    cam = cam / cam.max()
    r = explain(b, img, "gradcam", target="b")
    np.testing.assert_allclose(r.maps[0], cam, atol=1e-5)
    # HiResCAM = sum(g * A); LayerCAM = sum(relu(g) * A)
    hires = torch.relu((g * acts).sum(1))[0].detach().numpy()
    np.testing.assert_allclose(explain(b, img, "hirescam", target="b").maps[0], hires / hires.max(), atol=1e-5)
    layer = torch.relu((torch.relu(g) * acts).sum(1))[0].detach().numpy()
    np.testing.assert_allclose(explain(b, img, "layercam", target="b").maps[0], layer / layer.max(), atol=1e-5)


@pytest.mark.parametrize("arch", ["linear_convstack", "resnet18"])
def test_gradcam_on_the_last_layer_equals_cam_for_pool_linear_heads(arch):
    b = linear_convstack() if arch == "linear_convstack" else build_model("resnet18", classes=["a", "b"], input_size=(128, 128))
    img = rgb(2, (64, 64, 3)) if arch == "resnet18" else rgb(2, (32, 32, 3))
    for target in ("a", "b"):
        cam = explain(b, img, "cam", target=target).maps[0]
        assert cam.max() > 0
        for method in ("gradcam", "hirescam"):
            np.testing.assert_allclose(explain(b, img, method, target=target).maps[0], cam, atol=1e-4)


# ------------------------------------------------------------------ alignment
@pytest.mark.parametrize("resize", ["squash", "letterbox"])
def test_map_peaks_on_the_object_after_undoing_the_resize(resize):
    b = brightness_model(input_size=(32, 32), resize=resize)
    h, w, cy, cx = 48, 120, 30, 95  # non-square: letterbox pads top and bottom
    img = blob_image(h, w, cy, cx, r=7)
    r = explain(b, img, "gradcam", target="object")
    m = r.maps[0]
    assert m.shape == (h, w)
    y, x = np.unravel_index(np.argmax(m), m.shape)
    assert (y - cy) ** 2 + (x - cx) ** 2 <= 7 ** 2, (resize, y, x)
    yy, xx = np.mgrid[:h, :w]
    near = (yy - cy) ** 2 + (xx - cx) ** 2 <= 12 ** 2
    assert m[near].sum() > 0.9 * m.sum()  # the evidence is on the object, nowhere else
    assert r.probabilities[1] > r.probabilities[0]
    # predicted target is the object class here
    np.testing.assert_allclose(explain(b, img, "gradcam").maps, r.maps)


def test_centre_crop_maps_nothing_outside_the_crop():
    b = brightness_model(input_size=(32, 32), resize="crop")
    img = blob_image(32, 96, 16, 48, r=5)
    m = explain(b, img, "gradcam", target="object").maps[0]
    assert m[:, :32].max() == 0 and m[:, -32:].max() == 0
    y, x = np.unravel_index(np.argmax(m), m.shape)
    assert abs(y - 16) <= 5 and abs(x - 48) <= 5


# ------------------------------------------------------------------ targets
def test_targets_predicted_named_all_and_unknown():
    b = build_model("scaffoldnet", classes=["x", "y", "z"], input_size=(32, 32))
    img = rgb(3)
    r = explain(b, img)
    assert r.class_names == [["x", "y", "z"][int(np.argmax(r.probabilities))]]
    assert explain(b, img, target="z").class_names == ["z"]
    assert explain(b, img, target=["z", "x"]).class_names == ["z", "x"]
    assert explain(b, img, target="all").maps.shape == (3, 40, 56)
    with pytest.raises(CellclassError, match="no class 'w'"):
        explain(b, img, target="w")


def test_multilabel_explains_every_present_class():
    b = build_model("protein_fcn", classes=["n", "e", "m"], in_chans=4, output="sigmoid", input_size=(32, 32))
    b.thresholds = [0.0, 1.0, 0.0]  # classes 0 and 2 present whatever the image
    img = np.random.default_rng(4).random((4, 40, 40)).astype(np.float32)
    for method in ("gradcam", "fcn"):
        assert explain(b, img, method).class_names == ["n", "m"]


def test_binary_output_explains_both_classes_with_opposite_evidence():
    b = build_model("scaffoldnet", classes=["proliferating", "senescent"], in_chans=3, output="binary",
                    input_size=(32, 32))  # full-resolution feature map: no upsampling blurs the comparison
    img = np.random.default_rng(5).random((3, 32, 32)).astype(np.float32)
    r = explain(b, img, "hirescam", target="all")
    assert r.probabilities.shape == (2,) and r.maps.shape == (2, 32, 32)
    # d(-z)/dA = -dz/dA: where one class has positive evidence, the other has none
    assert (np.minimum(r.maps[0], r.maps[1]) < 1e-6).mean() > 0.999


def test_fcn_maps_are_the_models_probabilities():
    b = build_model("protein_fcn", classes=["n", "e"], in_chans=4, output="sigmoid", input_size=(64, 64))
    img = np.random.default_rng(6).random((4, 64, 64)).astype(np.float32)
    r = explain(b, img, "fcn", target="all")
    assert r.method == "fcn" and r.layer is None and r.normalisation.startswith("none")
    for k in range(2):  # image confidence = map max (bilinear upsampling keeps cell values at cell centres)
        assert r.maps[k].max() == pytest.approx(float(r.probabilities[k]), abs=1e-3)


def test_channels_say_which_input_channels_the_map_belongs_to():
    b = build_model("scaffoldnet", classes=["x", "y"], in_chans=3, input_size=(32, 32))
    img = np.random.default_rng(7).random((5, 40, 40)).astype(np.float32)
    assert explain(b, img, channels=[4, 0, 2]).channels == [4, 0, 2]
    assert explain(b, rgb(7)).channels == [0, 1, 2]


def test_layer_override_and_multi_layer_fusion():
    b = build_model("scaffoldnet", classes=["x", "y"], input_size=(32, 32))
    img = rgb(8)
    r = explain(b, img, layer="features.1")
    assert r.layer == "features.1"
    fused = explain(b, img, layer="features.1,features.5", target="x")
    assert fused.layers == ["features.1", "features.5"] and fused.maps.max() <= 1
    a = explain(b, img, layer="features.1", target="x").maps
    c = explain(b, img, layer="features.5", target="x").maps
    np.testing.assert_allclose(fused.maps, (a + c) / 2, atol=1e-6)
    assert explain(b, img, layer="features[-1]").layer == "features.5"
    with pytest.raises(CellclassError, match="no layer named"):
        explain(b, img, layer="nonexistent")


def test_batched_equals_one_by_one():
    b = build_model("senescence_cnn", classes=["x", "y"], in_chans=3, input_size=(32, 32))
    imgs = [rgb(i, (30 + 4 * i, 44, 3)) for i in range(3)]
    batch = explain_batch(b, imgs, "gradcam++", batch_size=3)
    for img, r in zip(imgs, batch):
        one = explain(b, img, "gradcam++")
        assert one.class_names == r.class_names
        np.testing.assert_allclose(one.maps, r.maps, atol=1e-5)
    per_image = explain_batch(b, imgs, targets=["x", "y", "all"])
    assert [r.class_names for r in per_image] == [["x"], ["y"], ["x", "y"]]


def test_run_options_replace_the_separate_keywords():
    from napari_cellclass import RunOptions

    b = build_model("senescence_cnn", classes=["x", "y"], in_chans=2, input_size=(32, 32))
    img = np.random.default_rng(3).random((4, 40, 36)).astype(np.float32)  # channel-first, 4 channels
    by_keywords = explain(b, img, device="cpu", channel_axis=0, channels=[1, 3])
    opts = RunOptions(device="cpu", batch_size=2, channel_axis=0, channels=(1, 3))
    by_options = explain(b, img, options=opts)
    np.testing.assert_allclose(by_options.maps, by_keywords.maps, atol=1e-6)
    assert explain_batch(b, [img, img], options=opts)[1].maps.shape == by_keywords.maps.shape
    with pytest.raises(CellclassError, match="RunOptions"):
        explain(b, img, options={"device": "cpu"})


# ------------------------------------------------------------------ ensembles
def test_ensemble_map_is_the_mean_of_normalised_member_maps():
    b = build_model(["scaffoldnet", "senescence_cnn"], classes=["x", "y"], input_size=(32, 32))
    img = rgb(9)
    r = explain(b, img, "gradcam", target="all")
    assert r.members == 2
    per_member = []
    for spec, net in zip(b.arch.members, b.network.members):
        one = ModelBundle(net, b.classes, b.output, b.in_chans, b.preprocess, spec)
        per_member.append(explain(one, img, "gradcam", target="all").maps)
    np.testing.assert_allclose(r.maps, np.mean(per_member, axis=0), atol=1e-5)


# ------------------------------------------------------------------ tiling
def test_tiled_maps_have_no_seams_and_one_global_scale():
    b = brightness_model(input_size=(32, 32))
    h, w = 64, 160
    ramp = np.tile(np.linspace(140, 255, w), (h, 1))
    img = np.repeat(ramp[..., None], 3, axis=2).astype(np.uint8)
    r = explain(b, img, "gradcam", target="object", tile=32)
    m = r.maps[0]
    assert m.shape == (h, w) and r.tiles["n_tiles"] > 4 and r.effective_resolution == (1.0, 1.0)
    inner = m[4:-4, 4:-4]
    assert np.abs(np.diff(inner, axis=1)).max() < 0.03  # no jumps where tiles meet
    assert inner[:, 10].mean() < 0.5 * inner[:, -10].mean()  # dim side stays dim: one scale for all tiles
    assert m.max() == pytest.approx(1.0)


def test_tiled_and_whole_image_agree_when_the_tile_is_the_image():
    b = linear_convstack()
    img = rgb(10, (32, 32, 3))
    np.testing.assert_allclose(explain(b, img, tile=32, target="a").maps, explain(b, img, target="a").maps, atol=1e-5)


# ------------------------------------------------------------------ the caller's model
def _state(net):
    return ({k: v.clone() for k, v in net.state_dict().items()}, [m.training for m in net.modules()],
            [p.requires_grad for p in net.parameters()])


def test_model_is_unchanged_by_every_method():
    b = build_model("resnet18", classes=["a", "b"], input_size=(64, 64))
    net = b.network
    net.train()
    net.backbone.layer1.eval()
    for p in net.backbone.conv1.parameters():
        p.requires_grad_(False)
    before = _state(net)
    img = rgb(11, (64, 64, 3))
    for method in ("gradcam", "gradcam++", "layercam", "hirescam", "cam"):
        explain(b, img, method, target="all")
        explain(b, img, method, tile=32)
    after = _state(net)
    assert before[1] == after[1] and before[2] == after[2]
    for k in before[0]:
        assert torch.equal(before[0][k], after[0][k]), k
    assert all(p.grad is None for p in net.parameters())
    assert n_hooks(net) == 0


def test_frozen_model_and_inference_mode_still_give_maps():
    b = linear_convstack()
    for p in b.network.parameters():
        p.requires_grad_(False)
    with torch.inference_mode():
        r = explain(b, rgb(12, (32, 32, 3)), "gradcam", target="a")
    assert r.maps.max() == pytest.approx(1.0)


def test_hooks_are_removed_after_an_exception():
    b = build_model("scaffoldnet", classes=["x", "y"], input_size=(32, 32))
    net = b.network
    assert n_hooks(net) == 0
    with pytest.raises(CellclassError, match="not a spatial feature map"):
        explain(b, rgb(13), layer="head.fc")
    assert n_hooks(net) == 0
    with pytest.raises(CellclassError, match="no class"):
        explain(b, rgb(13), target="nope")
    assert n_hooks(net) == 0 and net.training is False
    assert _lock_is_free(b)


def _lock_is_free(b) -> bool:
    free = []
    t = threading.Thread(target=lambda: free.append(b.lock.acquire(blocking=False) and (b.lock.release() or True)))
    t.start()
    t.join()
    return free == [True]


@pytest.mark.parametrize("tile", [None, 32])
def test_closing_the_generator_releases_lock_hooks_and_mode(tile):
    b = build_model("scaffoldnet", classes=["x", "y"], input_size=(32, 32))
    b.network.train()
    steps = explain_steps(b, [rgb(i, (64, 64, 3)) for i in range(4)], "gradcam", None, None, tile, device="cpu",
                          channel_axis="auto", channels=None, frame=0, batch_size=1)
    first = next(steps)
    assert first.done == 0 and first.total == (4 if tile is None else 4 * 9 * 9)  # 64 px + 16 px margins, stride 8
    second = next(steps)
    assert second.done == 1
    assert not _lock_is_free(b)  # held while the job runs
    steps.close()
    assert _lock_is_free(b) and n_hooks(b.network) == 0 and b.network.training


def test_progress_counts_to_the_total():
    b = build_model("scaffoldnet", classes=["x", "y"], input_size=(32, 32))
    steps = explain_steps(b, [rgb(0, (48, 48, 3)), rgb(1, (64, 40, 3))], "gradcam", "x", None, 32, device=None,
                          channel_axis="auto", channels=None, frame=0)
    seen, results = _run(steps)
    assert seen[-1].done == seen[-1].total and len(results) == 2
    assert [r.maps.shape for r in results] == [(1, 48, 48), (1, 64, 40)]


def test_bad_method_is_an_error_with_the_choices():
    b = build_model("scaffoldnet", classes=["x", "y"], input_size=(32, 32))
    with pytest.raises(CellclassError, match="gradcam"):
        explain(b, rgb(0), "saliency")
    with pytest.raises(CellclassError, match="CAM always uses"):
        explain(linear_convstack(), rgb(0), "cam", layer="features.0")


# ------------------------------------------------------------------ the bad-input matrix (issue 7)
@pytest.fixture(scope="module")
def resnet_tiny():
    return build_model("resnet18", classes=["a", "b"], input_size=(32, 32))


def _bad_input_cases():
    from badinputs import IMAGE_CASES

    return IMAGE_CASES


@pytest.mark.parametrize("case", list(_bad_input_cases()))
def test_bad_images_give_maps_or_a_cellclass_error(case, resnet_tiny):
    from badinputs import _OK

    make, expected = _bad_input_cases()[case]
    img = make()
    if expected == _OK:
        r = explain(resnet_tiny, img)
        assert np.isfinite(r.maps).all() and r.maps.shape[1:] == (img.shape[0], img.shape[1])
    else:
        with pytest.raises(CellclassError, match=expected):
            explain(resnet_tiny, img)
    assert n_hooks(resnet_tiny.network) == 0


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam", "hirescam", "cam"])
def test_ensemble_map_is_the_mean_of_member_maps_for_every_method(method):
    torch.manual_seed(0)  # random members: the same ones whatever ran before
    # CAM needs pool → linear heads (the small CNNs have a hidden layer): two small timm nets there
    if method == "cam":
        b = build_model(["resnet18", "resnet10t"], classes=["x", "y", "z"], input_size=(64, 64))
    else:
        b = build_model(["scaffoldnet", "senescence_cnn"], classes=["x", "y", "z"], input_size=(32, 32))
    img = rgb(14, (36, 44, 3))
    r = explain(b, img, method, target="all")
    assert r.members == 2 and "mean of 2 views" in r.normalisation
    per_member = [explain(_member(b, i), img, method, target="all").maps for i in range(2)]
    for m in per_member:  # each member's class map is scaled to its own maximum (0: no positive evidence)
        peaks = m.reshape(3, -1).max(1)
        assert all(p == pytest.approx(1.0) or p == 0 for p in peaks)
    assert r.maps.max() > 0
    assert not np.allclose(per_member[0], per_member[1], atol=1e-3)  # the mean is not trivially one member
    np.testing.assert_allclose(r.maps, np.mean(per_member, axis=0), atol=1e-5)


def test_ensemble_of_fcns_averages_the_members_probability_maps():
    torch.manual_seed(0)
    b = build_model(["protein_fcn", "protein_fcn"], classes=["n", "e"], in_chans=4, output="sigmoid", input_size=(32, 32))
    img = np.random.default_rng(15).random((4, 40, 40)).astype(np.float32)
    r = explain(b, img, "fcn", target="all")
    assert r.members == 2 and r.layer is None and r.normalisation.startswith("none")
    per_member = [explain(_member(b, i), img, "fcn", target="all").maps for i in range(2)]
    assert not np.allclose(per_member[0], per_member[1], atol=1e-4)  # differently initialised members
    # FCN maps are probabilities: averaged as they are, never rescaled to a maximum of 1
    np.testing.assert_allclose(r.maps, np.mean(per_member, axis=0), atol=1e-6)


def _member(b: ModelBundle, i: int) -> ModelBundle:
    return ModelBundle(b.network.members[i], b.classes, b.output, b.in_chans, b.preprocess, b.arch.members[i])


# ------------------------------------------------------------------ automatic target layers of the study networks
@pytest.mark.parametrize("arch,layer,alias", [
    ("resnet50", "backbone.layer4", "layer4"),
    ("inception_resnet_v2", "backbone.conv2d_7b", "conv2d_7b"),
    # MobileNetV3: the output of the block stack, i.e. of its last block (timm's 'blocks[-1]')
    ("mobilenetv3_large_100", "backbone.blocks", "blocks"),
])
def test_automatic_cam_layer_of_the_study_architectures(arch, layer, alias):
    from napari_cellclass.core.explain.target_layers import resolve

    b = build_model(arch, classes=["a", "b"], pretrained=False)  # no forward pass: the name is read, not run
    assert default_layer(b.network) == layer
    assert layer_names(b.network)[0] == layer  # the menu offers it first, as 'auto'
    assert resolve(b.network, alias)[0] == layer  # the short timm name typed by a user finds the same module
    if arch == "mobilenetv3_large_100":
        last = f"backbone.blocks.{len(b.network.backbone.blocks) - 1}"
        assert resolve(b.network, "blocks[-1]")[0] == last
        assert dict(b.network.named_modules())[layer][-1] is dict(b.network.named_modules())[last]


# ------------------------------------------------------------------ the hybrid PCA + SVM model (study 4)
HYBRID_CLASSES = ["COLO-704", "EFO-21"]


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory):
    """A tiny 'senescence-ensemble:hybrid-svm': two small timm backbones, PCA + SVM heads, hard vote."""
    from napari_cellclass.core.training.hybrid import fit_hybrid
    from napari_cellclass.core.synth import write_dataset

    folder = write_dataset("cell-line", tmp_path_factory.mktemp("data") / "cells", 12, seed=3, size=(48, 48),
                           classes=HYBRID_CLASSES)
    torch.manual_seed(0)
    base = build_model(["resnet18", "resnet10t"], classes=HYBRID_CLASSES, input_size=(64, 64), output="binary")
    return fit_hybrid(base, folder, device="cpu", seed=0, grid={"C": (1.0,), "degree": (2,)})


def test_gradcam_flows_through_the_svm_head(hybrid):
    """Grad-CAM of a hybrid member = the definition, with gradients of the SVM's decision function."""
    from napari_cellclass.core.explain.engine import _open, _plane

    one = _member(hybrid, 0)
    img = rgb(16, (64, 64, 3))
    s = _open(img, 0, one, "auto", None, 0)
    x, _ = one.preprocess.prepare(torch.from_numpy(_plane(s, one, None, 0)), s.vmax)
    net = one.network
    acts = net.forward_features(x[None]).detach().requires_grad_(True)
    z = net.head(net.pool_features(acts))[0, 0]  # the SVM decision value: > 0 votes for the second class
    (g,) = torch.autograd.grad(z, acts)
    assert g.abs().max() > 0
    for k, sign in ((1, 1.0), (0, -1.0)):
        cam = torch.relu((sign * g.mean(dim=(2, 3))[:, :, None, None] * acts).sum(1)).detach()
        cam = torch.nn.functional.interpolate(cam[None], size=(64, 64), mode="bilinear", align_corners=False)[0, 0]
        cam = (cam / cam.max()).numpy() if cam.max() > 0 else cam.numpy()
        r = explain(one, img, "gradcam", target=HYBRID_CLASSES[k])
        assert r.layer == "backbone.layer4"
        np.testing.assert_allclose(r.maps[0], cam, atol=1e-4)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam", "hirescam"])
def test_gradient_methods_explain_the_hybrid_ensemble(hybrid, method):
    img = rgb(17, (50, 70, 3))
    r = explain(hybrid, img, method, target="all")
    assert r.members == 2 and r.maps.shape == (2, 50, 70) and np.isfinite(r.maps).all()
    assert r.maps.max() > 0
    assert set(np.round(r.probabilities, 5)) <= {0.0, 0.5, 1.0}  # hard votes of two SVMs
    per_member = [explain(_member(hybrid, i), img, method, target="all").maps for i in range(2)]
    np.testing.assert_allclose(r.maps, np.mean(per_member, axis=0), atol=1e-5)


@pytest.mark.parametrize("method,names", [("cam", r"CAM needs .*SVM.*'gradcam'"), ("fcn", r"FCN heat maps need .*Grad-CAM")])
def test_methods_that_cannot_explain_an_svm_say_so_and_what_to_use(hybrid, method, names):
    with pytest.raises(CellclassError, match=names):
        explain(hybrid, rgb(18, (64, 64, 3)), method)
    assert n_hooks(hybrid.network) == 0 and _lock_is_free(hybrid)
