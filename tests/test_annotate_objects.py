"""Object annotations: a click labels an object; export writes its crop; train/fine-tune read it."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cellclass import load_dataset, predict_objects
from napari_cellclass.core.annotations import (
    AnnotationStore,
    export_dataset,
    training_samples,
)
from napari_cellclass.core.annotations.objects import (
    annotate_object,
    label_at,
    rank_objects,
)
from napari_cellclass.core.errors import DataError, ImageError
from napari_cellclass.core.io.images import inspect
from napari_cellclass.core.io.objects import object_boxes, object_crop


def _scene():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 40, (64, 64)).astype(np.uint8)
    lab = np.zeros((64, 64), np.int32)
    for i in range(8):  # 8 objects: even ones dim, odd ones bright
        r, c = divmod(i, 4)
        lab[4 + 30 * r:20 + 30 * r, 2 + 16 * c:13 + 16 * c] = i + 1
        img[lab == i + 1] = 200 if i % 2 else 60
    return img, lab


@pytest.fixture
def store(tmp_path):
    s = AnnotationStore.open(tmp_path / "ann.json")
    s.add_class("dim"), s.add_class("bright")
    return s


def test_click_two_objects_export_crops_and_train_reads_them(store, tmp_path):
    img, lab = _scene()
    key = store.add_image(img, name="cells", channel_axis="none")
    for click, cls in (((10.2, 5.0), "dim"), ((12.0, 22.0), "bright")):  # clicks inside objects 1 and 2
        label = label_at(lab, 0, click)
        assert label in (1, 2)
        annotate_object(store, key, 0, lab, label, cls, margin=2)
    assert label_at(lab, 0, (0, 0)) == 0 and label_at(lab, 0, (99, 99)) == 0
    layout, _ = inspect(img, "none", 1)
    boxes = {b.label: b for b in object_boxes(lab)}
    samples = training_samples(store, ["rectangle"])
    assert [s.labels for s in samples] == [[0], [1]]
    for s, label in zip(samples, (1, 2)):  # the exported crop is the crop predict_objects classifies
        np.testing.assert_array_equal(s.image, object_crop(img, layout, lab, boxes[label], margin=2))
    rep = export_dataset(store, tmp_path / "out", ["rectangle"])
    assert rep.n_samples == 2 and rep.counts == {"dim": 1, "bright": 1}
    ds = load_dataset(tmp_path / "out")
    assert len(ds) == 2
    with pytest.raises(DataError, match="no object with label 42"):
        annotate_object(store, key, 0, lab, 42, "dim")
    with pytest.raises(ImageError, match="shape"):
        annotate_object(store, key, 0, lab[:10], 1, "dim")


def test_finetune_on_object_crops(store, tiny_bundle):
    from napari_cellclass.core.training.finetune import (
        FineTuneOptions,
        finetune,
        start_model,
    )

    img, lab = _scene()
    key = store.add_image(img, name="cells", channel_axis="none")
    for label in range(1, 9):
        annotate_object(store, key, 0, lab, label, "bright" if label % 2 == 0 else "dim", margin=1)
    items = [x.as_tuple() for x in training_samples(store, ["rectangle"])]
    start = start_model("model", None, store.class_names, 3, bundle=tiny_bundle, seed=0)
    out = finetune(start, items, store.class_names, FineTuneOptions(epochs=1, batch_size=4, val_fraction=0.25), device="cpu")
    assert out.n_train == 6 and out.n_val == 2 and out.bundle.classes == ["dim", "bright"]
    table = predict_objects(out.bundle, img, lab, margin=1)  # the tuned model classifies the objects
    assert len(table) == 8 and table.probs.shape == (8, 2)


def test_rank_objects_most_uncertain_first(tiny_bundle):
    img, lab = _scene()
    table = predict_objects(tiny_bundle, np.stack([img] * 3, -1), lab)
    ranked = rank_objects(table, "least_confidence")
    scores = [s for _, _, s in ranked]
    assert scores == sorted(scores, reverse=True) and len(ranked) == 8
    np.testing.assert_allclose(scores[0], 1 - table.probs.max(1).min(), atol=1e-6)
    skipped = rank_objects(table, skip={ranked[0][:2]})
    assert ranked[0][:2] not in [r[:2] for r in skipped] and len(skipped) == 7


def test_object_annotations_record_their_label_image_and_reload(store, tmp_path):
    import json

    import tifffile

    from napari_cellclass.core.annotations.objects import labelled_objects, labels_source, matches

    img, lab = _scene()
    key = store.add_image(img, name="cells", channel_axis="none")
    on_disk = tmp_path / "cells_labels.tif"
    tifffile.imwrite(on_disk, lab)
    from_file = labels_source(store, lab, "cells_labels", on_disk)
    in_memory = labels_source(store, lab, "segmentation")
    assert from_file.path == "cells_labels.tif" and in_memory.path is None and from_file.hash == in_memory.hash
    first = annotate_object(store, key, 0, lab, 3, "dim", margin=2, source=from_file)
    annotate_object(store, key, 0, lab, 4, "bright", margin=2, source=in_memory)
    again = annotate_object(store, key, 0, lab, 3, "bright", margin=2, source=from_file)  # a second click relabels
    assert again.id == first.id and again.label == "bright" and len(store.items) == 2
    saved = json.loads(store.path.read_text())["items"]
    assert saved[0]["object"] == {"label": 3, "margin": 2,
                                  "labels": {"name": "cells_labels", "hash": from_file.hash, "path": "cells_labels.tif"}}
    assert saved[1]["object"]["labels"]["path"] is None and saved[1]["object"]["labels"]["name"] == "segmentation"

    back = AnnotationStore.open(store.path)  # reloading resolves them: by path, or by the pixels' hash
    reopened = labels_source(back, tifffile.imread(on_disk), "renamed layer", on_disk)
    # the file by its path; the in-memory one by its pixels, which are this file's
    assert set(labelled_objects(back, reopened)) == {(0, 3), (0, 4)}
    elsewhere = tmp_path / "copy.tif"
    tifffile.imwrite(elsewhere, lab)
    assert set(labelled_objects(back, labels_source(back, lab, "copy", elsewhere))) == {(0, 4)}  # another file
    pixels_only = labels_source(back, lab.copy(), "segmentation")
    assert set(labelled_objects(back, pixels_only)) == {(0, 3), (0, 4)}
    other = lab.copy()
    other[0, 0] = 9
    assert not labelled_objects(back, labels_source(back, other, "segmentation"))
    assert matches(back.items[0].obj, reopened)
    samples = training_samples(back, ["rectangle"])  # still plain regions for export and training
    assert sorted(s.labels[0] for s in samples) == [1, 1]


def test_damaged_object_reference_is_a_clear_error(store):
    import json

    from napari_cellclass.core.annotations.schema import AnnotationFileError

    img, lab = _scene()
    key = store.add_image(img, name="cells", channel_axis="none")
    from napari_cellclass.core.annotations.objects import labels_source

    annotate_object(store, key, 0, lab, 1, "dim", source=labels_source(store, lab, "seg"))
    doc = json.loads(store.path.read_text())
    doc["items"][0]["object"]["label"] = 0
    store.path.write_text(json.dumps(doc))
    with pytest.raises(AnnotationFileError, match="object: the label must be > 0"):
        AnnotationStore.open(store.path)
