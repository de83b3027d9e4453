"""Every preset trains one epoch end to end on its study's synthetic data, saves, loads and predicts.

Small inputs and ``pretrained=False`` keep this a CPU test; the timm backbones run at
the smallest size their stems accept.  The 7-backbone ensembles and InceptionResNetV2
take longer than the rest on two cores and are marked ``slow`` (they still run by
default: nothing in the pytest configuration deselects them).
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_cellclass.core.models.modelfile import load_model, save_model
from napari_cellclass.core.inference.predict import predict
from napari_cellclass.core.presets.studies import PRESETS, list_presets
from napari_cellclass.core.synth import generate
from napari_cellclass.core.training.api import train
from test_train import _run  # drains a generator: (events, result)

TASK = {"cell-line": "cell-line", "scaffoldnet": "brightfield", "efficientnetv2": "actin", "senescence": "senescence",
        "protein": "protein"}
SLOW = {"cell-line-authentication", "senescence-ensemble", "senescence-ensemble:frozen",
        "senescence-ensemble:fully-trained", "senescence-ensemble:hybrid-svm"}


def _task(name: str) -> str:
    return next(t for prefix, t in TASK.items() if name.startswith(prefix))


def _size(name: str) -> tuple[int, int]:
    from napari_cellclass.core.models.registry import ARCHITECTURES

    spec = PRESETS[name].arch
    names = [m.name for m in spec.members] if spec.family == "ensemble" else [spec.name]
    need = max(ARCHITECTURES[n].min_input if n in ARCHITECTURES else 32 for n in names)
    return (need, need)


def _same_as() -> dict[str, str]:
    """Presets that are another preset under a second name (every field but the name
    equal): training one trains the other, so the 7-backbone run is not repeated."""
    import json

    seen: dict[str, str] = {}
    alias = {}
    for name, preset in PRESETS.items():
        key = json.dumps({**preset.to_dict(), "name": ""}, sort_keys=True, default=str)
        if key in seen:
            alias[name] = seen[key]
        else:
            seen[key] = name
    return alias


def _params():
    alias = _same_as()
    for p in list_presets():
        if p["name"] in alias:
            continue
        marks = [pytest.mark.slow] if p["name"] in SLOW else []
        yield pytest.param(p["name"], marks=marks, id=p["name"])


def test_every_preset_is_covered():
    assert {p["name"] for p in list_presets()} == set(PRESETS)
    assert all(_task(n) for n in PRESETS)
    alias = _same_as()
    trained = {p.values[0] for p in _params()}
    assert trained | set(alias) == set(PRESETS) and set(alias.values()) <= trained
    assert alias == {"senescence-ensemble:fully-trained": "senescence-ensemble"}  # the study's two names for one model


@pytest.mark.parametrize("name", list(_params()))
def test_preset_trains_saves_loads_predicts(name, tmp_path):
    size = _size(name)
    task = _task(name)
    classes = ["nucleus", "ER", "Golgi"] if task == "protein" else None
    s = generate(task, 6, seed=0, size=(max(32, size[0]), max(32, size[1])), classes=classes)
    items = [(im, lab, f"{task}{i}") for i, (im, lab) in enumerate(zip(s.images, s.labels))]
    axis = 0 if task in ("senescence", "protein") else "auto"
    gen = train(name, items, classes=s.classes, channel_axis=axis, epochs=1, batch_size=4, input_size=size,
                pretrained=False, device="cpu", val_fraction=0.34,
                test_fraction=0.0)  # 6 images cannot spare a test split as well (test_train_recipe_options.py has one)
    _, res = _run(gen)
    b = res.bundle
    tr = b.provenance["training"]
    if name.endswith(":hybrid-svm"):  # fitted (PCA + SVM heads, core.hybrid), not trained for epochs
        assert tr["epochs_run"] == 0 and tr["method"].startswith("hybrid") and not res.cancelled
    else:
        assert tr["epochs_run"] == max(1, len(PRESETS[name].train.stages))
        assert all(np.isfinite(h["loss"]) for h in res.history)
    assert tr["data"]["n_val"] >= 1
    assert b.provenance["preset"] == name and b.classes == s.classes and b.input_size == size
    again = load_model(save_model(b, tmp_path / "m.safetensors"))
    probs = predict(again, s.images[:2], channel_axis=axis)
    assert probs.shape == (2, len(s.classes)) and np.isfinite(probs).all()
    assert np.allclose(probs, predict(b, s.images[:2], channel_axis=axis), atol=1e-5)
    if s.multilabel:
        assert again.thresholds is not None and len(again.thresholds) == len(s.classes)
