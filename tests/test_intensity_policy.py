"""The default intensity policy of models trained from an architecture name: every
dtype and range reaches the network in a sane range, and a tiny run learns on
12-bit and large-range float data (both stayed near chance when the default
divided by the dtype's range: 12-bit in uint16 arrived as a near-constant, float
data arrived unscaled)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cellclass.core.inference.predict import predict, preprocess
from napari_cellclass.core.training.api import fit


def _texture(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """Coarse (label 0) or fine (label 1) granular texture in [0, 1]; the classes differ
    in texture only, never in mean brightness."""
    sigma = size * 0.08 if label == 0 else size * 0.02
    f = np.fft.fftfreq(size)
    kernel = np.exp(-2 * (np.pi * sigma) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    tex = np.real(np.fft.ifft2(np.fft.fft2(rng.normal(size=(size, size))) * kernel))
    lo, hi = np.percentile(tex, (1, 99))
    return np.clip((tex - lo) / (hi - lo), 0, 1)


def _image(kind: str, rng: np.random.Generator, label: int, size: int = 32) -> np.ndarray:
    t = _texture(rng, label, size)
    gain = rng.uniform(0.7, 1.3)  # exposure differs per image, as it does between acquisitions
    if kind == "uint8-rgb":
        return (np.stack([t * gain * 200 + 20] * 3, -1) + rng.normal(0, 3, (size, size, 3))).clip(0, 255).astype(np.uint8)
    if kind == "uint16-12bit":  # a dim 12-bit camera: ~100-1100 of 65535
        return (150 + 800 * gain * t + rng.normal(0, 10, t.shape)).clip(0, 4095).astype(np.uint16)
    if kind == "uint16-full":
        return (2000 + 55000 * gain * t).clip(0, 65535).astype(np.uint16)
    if kind == "float-unit":
        return (0.1 + 0.7 * gain * t).astype(np.float32)
    if kind == "float-3e4":  # 3 channels, 0-3e4, with a background offset as photon counts have
        return np.stack([8000 + 2e4 * gain * t, 5000 + 1e4 * t, 3e4 * (1 - t)]).astype(np.float32)
    if kind == "float-negative":  # e.g. background-subtracted data
        return (-800 + 600 * gain * t).astype(np.float32)
    if kind == "constant-plane":  # channel 1 is blank in every image (a laser switched off)
        return np.stack([1000 + 3000 * gain * t, np.full_like(t, 500.0), 4000 * t]).astype(np.float32)
    raise AssertionError(kind)


def _items(kind: str, n: int, seed: int, size: int = 32) -> list[tuple[np.ndarray, list[int], str]]:
    rng = np.random.default_rng(seed)
    return [(_image(kind, rng, i % 2, size), [i % 2], f"{kind}-{seed}-{i}") for i in range(n)]


KINDS = ("uint8-rgb", "uint16-12bit", "uint16-full", "float-unit", "float-3e4", "float-negative", "constant-plane")


@pytest.mark.parametrize("policy", [None, "dataset"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_dtype_reaches_the_network_in_a_sane_range(kind, policy):
    items = _items(kind, 8, seed=0)
    bundle = fit("resnet18", items, classes=["coarse", "fine"], epochs=0, input_size=(32, 32), val_fraction=0.0,
                 device="cpu", normalization=policy)
    assert bundle.preprocess.normalization.method == (policy or "image_std")
    unseen = _items(kind, 4, seed=1)
    x = torch.stack([preprocess(bundle, img) for img, _, _ in unseen])
    assert torch.isfinite(x).all()
    mean, std = x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))
    assert (mean.abs() <= 3).all(), f"{kind}: per-channel means {mean.tolist()}"
    for c, s in enumerate(std.tolist()):
        if kind == "constant-plane" and c == 1:
            assert s < 0.1 and abs(mean[c]) < 0.1  # a blank channel stays blank, never amplified noise
        else:
            assert 0.1 <= s <= 10, f"{kind}: channel {c} std {s}"


@pytest.mark.parametrize("kind", ["uint16-12bit", "float-3e4"])
def test_a_tiny_run_learns_12bit_and_large_range_float(kind):
    # scaffoldnet has no batch-norm, so the input's scale and offset reach the optimiser unfiltered
    # (the old default left both at accuracy 0.5 here)
    train_items = _items(kind, 64, seed=2)
    bundle = fit("scaffoldnet", train_items, classes=["coarse", "fine"], epochs=12, input_size=(32, 32), device="cpu")
    test_items = _items(kind, 40, seed=3)
    probs = predict(bundle, [img for img, _, _ in test_items], device="cpu")
    accuracy = float((probs.argmax(1) == np.array([lab[0] for _, lab, _ in test_items])).mean())
    assert accuracy >= 0.85, f"{kind}: accuracy {accuracy:.2f} on unseen images"


def test_keep_best_restores_an_earlier_epoch_only_beyond_the_noise():
    from napari_cellclass.core.training.keepbest import choose

    noisy_best = torch.tensor([0.5, 0.9, 0.2, 0.7])
    noisy_last = torch.tensor([0.6, 0.7, 0.5, 0.6])  # a little worse on average, as much better as worse per image
    kept = choose(3, noisy_best, 8, noisy_last, keep_best=True)
    assert (kept.epoch, kept.restored) == (8, False) and "within the noise" in kept.reason
    clear_best = torch.linspace(0.1, 0.3, 60)
    kept = choose(3, clear_best, 8, clear_best + 0.2 + 0.01 * torch.randn(60, generator=torch.Generator().manual_seed(0)),
                  keep_best=True)
    assert (kept.epoch, kept.restored) == (3, True) and "restored epoch 3" in kept.reason
    assert choose(3, None, 8, None, keep_best=True).epoch == 8  # no validation split: the last epoch
    assert choose(3, clear_best, 8, clear_best + 1, keep_best=False).epoch == 8


def test_a_12bit_model_predicts_the_same_from_its_tiffs_arrays_and_the_tiled_map(tmp_path):
    import tifffile

    from napari_cellclass.core.inference.tiling import predict_map
    from napari_cellclass.core.models.modelfile import load_model, save_model

    bundle = fit("resnet18", _items("uint16-12bit", 8, seed=4), classes=["coarse", "fine"], epochs=1,
                 input_size=(32, 32), device="cpu")
    path = save_model(bundle, tmp_path / "m.safetensors")
    loaded = load_model(path)
    assert loaded.preprocess == bundle.preprocess and loaded.preprocess.normalization.method == "image_std"
    images = [img for img, _, _ in _items("uint16-12bit", 3, seed=5)]
    files = []
    for i, img in enumerate(images):
        files.append(tmp_path / f"img{i}.tif")
        tifffile.imwrite(files[-1], img)
    from_arrays = predict(bundle, images, device="cpu")
    from_files = predict(loaded, [str(f) for f in files], device="cpu")
    assert np.allclose(from_arrays, from_files, atol=1e-6)
    # the tiled map of one model-sized tile is the image's prediction: same constants, no per-tile statistics
    maps = np.stack([predict_map(loaded, str(f), tile=32, device="cpu")[:, 0, 0] for f in files])
    assert np.allclose(maps, from_files, atol=1e-5)


def test_the_policy_is_chosen_for_new_models_only(tmp_path):
    from napari_cellclass.core.errors import CellclassError

    items = _items("float-3e4", 8, seed=6)
    bundle = fit("resnet18", items, classes=["coarse", "fine"], epochs=0, input_size=(32, 32), val_fraction=0.0,
                 device="cpu", normalization="dataset")
    norm = bundle.preprocess.normalization
    assert norm.mean is not None and norm.fitted_on.startswith("training split: 8 image(s)")
    assert 5000 < norm.mean[1] < 15000  # measured in the images' own units
    with pytest.raises(CellclassError, match="intensity policy"):
        fit(bundle, items, classes=["coarse", "fine"], epochs=0, val_fraction=0.0, device="cpu", normalization="image_std")
    with pytest.raises(CellclassError, match="preset keeps its paper"):
        fit("scaffoldnet-brightfield", items, classes=["coarse", "fine"], epochs=0, device="cpu", normalization="dataset")
    with pytest.raises(CellclassError, match="unknown normalisation"):
        fit("resnet18", items, classes=["coarse", "fine"], epochs=0, device="cpu", normalization="zscore")
