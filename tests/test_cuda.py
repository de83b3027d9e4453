"""The GPU path: the same answers on CUDA (with AMP) as on the CPU. Skipped without CUDA.

CI has no GPU; these run on a lent GPU machine (see the notes of issue 2/7).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cellclass import build_model, load_model, predict, predict_map, save_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def bundle():
    return build_model("resnet18", classes=["a", "b", "c"], input_size=(64, 64))


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (80, 100, 3), dtype=np.uint8) for _ in range(12)]


def test_auto_picks_cuda_and_uses_channels_last(bundle, images):
    predict(bundle, images[:2], device="auto")
    assert bundle.device.type == "cuda"
    conv = bundle.network.backbone.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)


def test_cuda_fp32_matches_cpu(bundle, images):
    cpu = predict(bundle, images, device="cpu")
    gpu = predict(bundle, images, device="cuda", amp=False)
    np.testing.assert_allclose(gpu, cpu, atol=2e-4)


def test_cuda_amp_agrees_with_cpu(bundle, images):
    cpu = predict(bundle, images, device="cpu")
    amp = predict(bundle, images, device="cuda", amp=True)
    np.testing.assert_allclose(amp, cpu, atol=3e-2)
    assert (amp.argmax(1) == cpu.argmax(1)).mean() >= 0.9


def test_tiled_map_on_cuda(bundle):
    img = np.random.default_rng(1).integers(0, 255, (300, 260, 3), dtype=np.uint8)
    cpu = predict_map(bundle, img, tile=64, overlap=0.5, device="cpu")
    gpu = predict_map(bundle, img, tile=64, overlap=0.5, device="cuda", amp=False)
    np.testing.assert_allclose(gpu, cpu, atol=2e-4)


def test_model_saved_from_gpu_loads_on_cpu(bundle, images, tmp_path):
    gpu = predict(bundle, images, device="cuda", amp=False)
    path = save_model(bundle, tmp_path / "m.safetensors")
    loaded = load_model(path)
    assert loaded.device.type == "cpu"
    np.testing.assert_allclose(predict(loaded, images, device="cuda", amp=False), gpu, atol=1e-6)


def test_uint16_and_float_inputs_on_cuda(bundle):
    rng = np.random.default_rng(2)
    u16 = rng.integers(0, 65535, (70, 90), dtype=np.uint16)
    f32 = u16.astype(np.float32) / 65535
    a = predict(bundle, u16, device="cuda", amp=False)
    b = predict(bundle, f32, device="cuda", amp=False)
    np.testing.assert_allclose(a, b, atol=1e-4)  # dtype scaling happens on the device, identically
