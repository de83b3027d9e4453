"""Annotations hand over to training: the in-memory samples train a model for 1 epoch."""

from __future__ import annotations

import numpy as np

from napari_cellclass.core.annotations import AnnotationStore, training_samples


def test_one_epoch_from_annotation_samples(tmp_path):
    from napari_cellclass.core.data import load_dataset
    from napari_cellclass.core.training.api import fit

    s = AnnotationStore.open(tmp_path / "a.json")
    s.add_class("dim"), s.add_class("bright")
    rng = np.random.default_rng(0)
    stack = np.concatenate([rng.integers(0, 60, (6, 48, 48)), rng.integers(150, 255, (6, 48, 48))]).astype(np.uint8)
    k = s.add_image(stack, name="stack")
    for t in range(12):
        s.apply_key(k, t, "1" if t < 6 else "2")
    s.add_point(k, 0, "dim", (10, 10), 24)
    s.add_rectangle(k, 7, "bright", (0, 0, 30, 30))
    items = [x.as_tuple() for x in training_samples(s)]
    ds = load_dataset(items, s.class_names, channel_axis=0)
    assert len(ds) == 14 and ds.class_counts() == [7, 7]
    point = next(i for i, (_, _, name, _) in enumerate(items) if "point" in name)
    plane, value_max = ds[point]
    assert plane.shape == (1, 24, 24) and value_max == 255.0
    bundle = fit("senescence_cnn", items, classes=s.class_names, channel_axis=0, epochs=1, batch_size=4,
                 input_size=(32, 32), pretrained=False, device="cpu")
    assert bundle.classes == ["dim", "bright"] and bundle.in_chans == 1
    assert bundle.provenance["training"]["epochs_run"] == 1
