"""Annotating the synthetic studies: multichannel uint16 and multi-label data with
painted masks export to the same on-disk layout core/synth writes."""

from __future__ import annotations

import csv

import numpy as np
import tifffile

from napari_cellclass.core.annotations import AnnotationStore, export_dataset, training_samples
from napari_cellclass.core.io.files import read_image
from napari_cellclass.core.synth import generate


def test_senescence_channels_keep_uint16_through_keys_and_export(tmp_path):
    syn = generate("senescence", 4, seed=0, size=(48, 48))
    s = AnnotationStore.open(tmp_path / "a.json")
    for c in syn.classes:
        s.add_class(c)
    for i, (img, lab) in enumerate(zip(syn.images, syn.labels)):
        k = s.add_image(img, name=f"cell{i}")
        s.apply_key(k, 0, lab[0] + 1)
    rep = export_dataset(s, tmp_path / "out")
    assert rep.layout == "folders" and rep.counts == {c: 2 for c in syn.classes}
    for i, (img, lab) in enumerate(zip(syn.images, syn.labels)):
        back = read_image(tmp_path / "out" / syn.classes[lab[0]] / f"cell{i}.tif")
        assert back.data.dtype == np.uint16 and back.channel_axis == 0
        np.testing.assert_array_equal(back.data, img)


def test_protein_multilabel_with_painted_masks(tmp_path):
    syn = generate("protein", 2, seed=1, size=(48, 48))
    k_classes = len(syn.classes)
    s = AnnotationStore.open(tmp_path / "p.json", multilabel=True)
    for c in syn.classes:
        s.add_class(c)
    painted = []
    for i, (img, lab, m) in enumerate(zip(syn.images, syn.labels, syn.masks)):
        k = s.add_image(img, name=f"field{i}")
        for j in lab:  # keys reach the first nine classes; the rest by index
            if j < 9:
                s.apply_key(k, 0, j + 1)
            else:
                s.label_image(k, 0, j, mode="add")
        label_mask = np.zeros(m.shape[1:], np.uint8)
        for j in lab:  # a Labels layer holds one class per pixel: later classes paint over
            label_mask[m[j]] = j + 1
        s.set_pixel_labels(k, 0, label_mask)
        painted.append(label_mask)
        assert s.image_labels(k, 0) == tuple(syn.classes[j] for j in sorted(lab))
    rep = export_dataset(s, tmp_path / "out")
    assert rep.layout == "csv" and rep.n_masks == 2
    with open(tmp_path / "out" / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for i, row in enumerate(rows):
        assert row["labels"].split(";") == [syn.classes[j] for j in sorted(syn.labels[i])]
        masks = tifffile.imread(tmp_path / "out" / "masks" / f"field{i}.tif")
        assert masks.shape == (k_classes, 48, 48)
        np.testing.assert_array_equal(masks.argmax(0) + masks.any(0), painted[i])
    samples = training_samples(s)
    assert [x.labels for x in samples] == [sorted(lab) for lab in syn.labels]
