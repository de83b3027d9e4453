"""Issue 17: fine-tuning (core.training.finetune, the Fine-tune dock's engine) ends
with the same trust fitting as training: OOD statistics and a temperature."""

from __future__ import annotations

import numpy as np

from napari_cellclass.core.annotations import AnnotationStore, training_samples
from napari_cellclass.core.inference.predict import predict_records
from napari_cellclass.core.training.finetune import (
    FineTuneOptions,
    finetune,
    start_model,
)


def test_finetune_fits_ood_statistics_and_a_temperature(tmp_path):
    s = AnnotationStore.open(tmp_path / "ann.json")
    s.add_class("dim"), s.add_class("bright")
    rng = np.random.default_rng(0)
    planes = np.concatenate([rng.integers(0, 60, (12, 32, 32)), rng.integers(150, 255, (12, 32, 32))]).astype(np.uint8)
    k = s.add_image(planes, name="planes", channel_axis="none")
    for t in range(24):
        s.label_image(k, t, "dim" if t < 12 else "bright")
    start = start_model("scratch", "senescence_cnn", s.class_names, 1, input_size=(32, 32))
    assert start.ood is None
    out = finetune(start, [x.as_tuple() for x in training_samples(s)], s.class_names,
                   FineTuneOptions(epochs=2, batch_size=8, val_fraction=0.34), device="cpu")
    b = out.bundle
    assert b.ood is not None and b.ood.means.shape[0] == 2 and np.isfinite(b.ood.threshold)
    assert b.calibration is not None and b.calibration["temperature"] > 0
    assert "trust" in b.provenance["training"]
    rec = next(predict_records(b, [planes[0]], device="cpu", channel_axis="none"))
    assert rec.ood_score is not None and rec.ood == (rec.ood_score > b.ood.threshold)
