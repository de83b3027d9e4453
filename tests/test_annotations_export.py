"""Region crops are exactly the right pixels; exports read back as data sets."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile

from napari_cellclass.core.annotations import (AnnotationStore, AnnotationWarning, crop_box, crop_point, crop_polygon, export_dataset,
                                               training_samples)
from napari_cellclass.core.errors import DataError
from napari_cellclass.core.io.files import find_images, read_image
from napari_cellclass.core.io.images import guess_layout


def coded(h=30, w=40):
    """Pixel value = 100 * row + column: every pixel says where it came from."""
    y, x = np.mgrid[:h, :w]
    return (100 * y + x).astype(np.uint16)


class Recording:
    """Array-like that records which regions were asked for."""

    def __init__(self, a):
        self.a, self.shape, self.dtype, self.keys = a, a.shape, a.dtype, []

    def __getitem__(self, key):
        self.keys.append(key)
        return self.a[key]


@pytest.mark.parametrize("box, rows, cols", [
    ((2, 3, 10, 12), (2, 11), (3, 13)),
    ((1.5, 2.6, 4.4, 5.5), (2, 5), (3, 6)),  # pixel centres inside the box
    ((10, 12, 2, 3), (2, 11), (3, 13)),  # corners in any order
    ((-5, -5, 3, 4), (0, 4), (0, 5)),  # clipped at the top-left border
    ((25, 35, 99, 99), (25, 30), (35, 40)),  # clipped at the bottom-right border
])
def test_box_crops_exact_pixels_and_read_only_the_region(box, rows, cols):
    img = Recording(coded())
    crop = crop_box(img, guess_layout(img.shape), 0, box)
    np.testing.assert_array_equal(crop[0], coded()[rows[0]:rows[1], cols[0]:cols[1]])
    assert crop.dtype == np.uint16 and crop.shape[0] == 1
    assert img.keys == [(slice(*rows), slice(*cols))]


def test_box_crop_of_rgb_and_of_a_stack_frame():
    rgb = np.stack([coded(), coded() + 5000, coded() + 10000], axis=-1).astype(np.uint16)
    crop = crop_box(rgb, guess_layout(rgb.shape), 0, (4, 5, 8, 9))
    np.testing.assert_array_equal(crop, np.moveaxis(rgb[4:9, 5:10], -1, 0))
    tchw = np.stack([np.stack([coded().astype(np.uint32) + 100000 * (10 * t + c) for c in range(2)]) for t in range(10)]).astype(np.uint32)
    crop = crop_box(tchw, guess_layout(tchw.shape), 7, (1, 2, 3, 4))
    np.testing.assert_array_equal(crop, tchw[7, :, 1:4, 2:5])
    assert crop.dtype == np.uint32
    floaty = coded().astype(np.float64)
    assert crop_box(floaty, guess_layout(floaty.shape), 0, (0, 0, 3, 3)).dtype == np.float32
    with pytest.raises(DataError, match="covers no pixel"):
        crop_box(rgb, guess_layout(rgb.shape), 0, (40, 50, 60, 70))


def test_polygon_crop_is_its_bbox_and_can_mask_the_outside():
    img = coded() + 1
    tri = [(-0.5, -0.5), (-0.5, 10), (10, -0.5)]  # pixel centres inside: row + col <= 9
    crop = crop_polygon(img, guess_layout(img.shape), 0, tri)
    np.testing.assert_array_equal(crop[0], img[0:11, 0:11])
    masked = crop_polygon(img, guess_layout(img.shape), 0, tri, mask_outside=True)[0]
    y, x = np.mgrid[:11, :11]
    np.testing.assert_array_equal(masked, np.where(y + x <= 9, img[:11, :11], 0))
    shifted = [(v[0] + 12, v[1] + 20) for v in tri]
    masked = crop_polygon(img, guess_layout(img.shape), 0, shifted, mask_outside=True)[0]
    np.testing.assert_array_equal(masked, np.where(y + x <= 9, img[12:23, 20:31], 0))


@pytest.mark.parametrize("mode", ["reflect", "edge", "constant"])
@pytest.mark.parametrize("size", [(5, 5), (8, 6), (1, 1), (21, 33)])
def test_point_crops_match_numpy_pad_everywhere_including_borders(mode, size):
    img = coded(17, 23)
    lay = guess_layout(img.shape)
    P = 40
    ref = np.pad(img, P, mode=mode)
    h, w = size
    for cy, cx in [(0, 0), (16, 22), (0, 22), (8, 11), (3.4, 19.6), (16, 0), (1, 2)]:
        crop = crop_point(img, lay, 0, (cy, cx), size, pad_mode=mode)
        top, left = int(np.floor(cy + 0.5)) - h // 2, int(np.floor(cx + 0.5)) - w // 2
        assert crop.shape == (1, h, w)
        np.testing.assert_array_equal(crop[0], ref[top + P: top + P + h, left + P: left + P + w])
        assert crop[0, h // 2, w // 2] == img[int(np.floor(cy + 0.5)), int(np.floor(cx + 0.5))]


def test_point_crop_in_a_stack_reads_only_a_window_and_rejects_outside_points():
    tyx = Recording(np.stack([coded() + 3000 * t for t in range(12)]))
    lay = guess_layout(tyx.shape)
    crop = crop_point(tyx, lay, 9, (15, 20), (6, 6), pad_mode="constant")
    np.testing.assert_array_equal(crop[0], tyx.a[9, 12:18, 17:23])
    assert tyx.keys == [(9, slice(12, 18), slice(17, 23))]
    with pytest.raises(DataError, match="outside"):
        crop_point(tyx, lay, 0, (30, 5), (6, 6))
    with pytest.raises(DataError, match="pad mode"):
        crop_point(tyx, lay, 0, (3, 5), (6, 6), pad_mode="wrap")


# ---------------------------------------------------------------------- export
@pytest.fixture
def annotated(tmp_path):
    s = AnnotationStore.open(tmp_path / "ann" / "a.json")
    s.add_class("round"), s.add_class("long")
    img = coded()
    rgb = np.stack([coded() % 256] * 3, axis=-1).astype(np.uint8)
    f = tmp_path / "raw" / "rgb.tif"
    f.parent.mkdir()
    tifffile.imwrite(f, rgb, photometric="rgb")
    k1 = s.add_image(img, name="grey")
    k2 = s.add_image(path=f)
    s.apply_key(k1, 0, "1")
    s.apply_key(k2, 0, "2")
    s.add_rectangle(k1, 0, "long", (2, 3, 10, 12))
    s.add_point(k2, 0, "round", (0, 0), 8)
    return s, k1, k2, img, rgb


def test_training_samples_in_memory(annotated):
    s, k1, k2, img, rgb = annotated
    samples = training_samples(s, pad_mode="constant")
    by_name = {x.name: x for x in samples}
    assert sorted(by_name) == ["grey", "grey_rectangle3", "rgb", "rgb_point4"]
    np.testing.assert_array_equal(by_name["grey"].image, img[None])
    assert by_name["grey"].labels == [0] and by_name["rgb"].labels == [1]
    np.testing.assert_array_equal(by_name["rgb"].image, np.moveaxis(rgb, -1, 0))
    np.testing.assert_array_equal(by_name["grey_rectangle3"].image[0], img[2:11, 3:13])
    pt = by_name["rgb_point4"].image
    assert pt.shape == (3, 8, 8) and (pt[:, :4, :] == 0).all()
    np.testing.assert_array_equal(pt[:, 4:, 4:], np.moveaxis(rgb[:4, :4], -1, 0))
    image, labels, name, mask = by_name["rgb"].as_tuple()
    assert labels == [1] and name == "rgb" and mask is None
    assert [x.name for x in training_samples(s, ["image"])] == ["grey", "rgb"]


def test_export_class_folders_read_back(annotated, tmp_path):
    s, k1, k2, img, rgb = annotated
    rep = export_dataset(s, tmp_path / "out")
    assert rep.layout == "folders" and rep.n_samples == 4 and rep.counts == {"round": 2, "long": 2}
    files = find_images([tmp_path / "out"])
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in files) == [
        "long/grey_rectangle3.tif", "long/rgb.tif", "round/grey.tif", "round/rgb_point4.tif"]
    got = read_image(tmp_path / "out" / "long" / "rgb.tif")
    np.testing.assert_array_equal(got.data, rgb)
    assert got.rgb
    np.testing.assert_array_equal(read_image(tmp_path / "out" / "long" / "grey_rectangle3.tif").data, img[2:11, 3:13])
    with pytest.raises(DataError, match="not an empty folder"):
        export_dataset(s, tmp_path / "out")


def test_export_csv_for_multilabel_and_pixel_labels(tmp_path):
    s = AnnotationStore.open(tmp_path / "m.json", multilabel=True)
    for c in ("nucleus", "cytosol", "membrane"):
        s.add_class(c)
    chw = np.stack([coded() + 1000 * c for c in range(4)])
    k = s.add_image(chw, name="cells")
    s.label_image(k, 0, ["nucleus", "membrane"])
    m = np.zeros((30, 40), np.uint8)
    m[:5, :5] = 1
    m[10:20, 10:20] = 2
    k2 = s.add_image(chw + 1, name="painted")
    s.set_pixel_labels(k2, 0, m)
    rep = export_dataset(s, tmp_path / "csvout")
    assert rep.layout == "csv" and rep.n_masks == 1
    root = tmp_path / "csvout"
    with open(root / "labels.csv", newline="") as fh:
        rows = {r["path"]: r["labels"] for r in csv.DictReader(fh)}
    assert rows == {"images/cells.tif": "nucleus;membrane", "images/painted.tif": "nucleus;cytosol"}
    assert (root / "classes.txt").read_text().split() == ["nucleus", "cytosol", "membrane"]
    back = read_image(root / "images" / "cells.tif")
    np.testing.assert_array_equal(back.data, chw)
    assert back.channel_axis == 0
    masks = tifffile.imread(root / "masks" / "painted.tif")
    assert masks.shape == (3, 30, 40) and masks.dtype == np.uint8
    np.testing.assert_array_equal(masks[0], m == 1)
    np.testing.assert_array_equal(masks[1], m == 2)
    assert not masks[2].any()
    sample = [x for x in training_samples(s) if x.name == "painted"][0]
    np.testing.assert_array_equal(sample.mask, m)
    np.testing.assert_array_equal(sample.target_masks(3), masks.astype(bool))
    with pytest.raises(DataError, match="class folders"):
        export_dataset(s, tmp_path / "nope", layout="folders")


def test_interrupted_export_leaves_nothing_and_missing_files_are_named(annotated, tmp_path, monkeypatch):
    s, k1, k2, img, rgb = annotated
    from napari_cellclass.core.annotations import export as export_mod

    calls = []

    def flaky(arr, rgb):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return b"x"

    monkeypatch.setattr(export_mod, "_tiff_bytes", flaky)
    with pytest.raises(OSError):
        export_dataset(s, tmp_path / "half")
    monkeypatch.undo()
    assert not (tmp_path / "half").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".half")]
    (tmp_path / "raw" / "rgb.tif").unlink()
    with pytest.warns(AnnotationWarning, match="missing"):
        fresh = AnnotationStore.open(s.path)
    with pytest.raises(DataError, match="rgb.tif"):
        training_samples(fresh)
    fresh.attach(k2, rgb)  # the open layer stands in for the missing file
    assert len(training_samples(fresh)) == 4


def test_exported_masks_load_back_as_the_samples_dense_targets(tmp_path):
    import torch

    from napari_cellclass.core.training import fcn_targets as fcn
    from napari_cellclass.core.data import load_dataset
    from napari_cellclass.core.io.preprocess import Normalization, Preprocess

    s = AnnotationStore.open(tmp_path / "m.json", multilabel=True)
    for c in ("nucleus", "cytosol"):
        s.add_class(c)
    chw = np.stack([coded() + 1000 * c for c in range(2)])
    s.label_image(s.add_image(chw, name="plain"), 0, ["cytosol"])
    m = np.zeros((30, 40), np.uint8)
    m[:10, :20] = 1
    m[20:, 20:] = 2
    s.set_pixel_labels(s.add_image(chw + 1, name="painted"), 0, m)
    export_dataset(s, tmp_path / "out")
    with open(tmp_path / "out" / "labels.csv", newline="") as fh:
        rows = {r["path"]: r["mask"] for r in csv.DictReader(fh)}
    assert rows == {"images/plain.tif": "", "images/painted.tif": "masks/painted.tif"}
    ds = load_dataset(tmp_path / "out", channel_axis=0)
    by_name = {n.rsplit("/", 1)[-1]: i for i, n in enumerate(ds.names)}
    assert ds.masks[by_name["plain.tif"]] is None and not ds.has_mask(by_name["plain.tif"])
    np.testing.assert_array_equal(ds.masks[by_name["painted.tif"]], np.stack([m == 1, m == 2]))
    assert ds.labels[by_name["painted.tif"]] == [0, 1]
    # what `cellclass train` on the folder feeds an FCN: the painted planes for the painted sample
    pre = Preprocess((30, 40), "squash", "bilinear", Normalization("none"))
    cpu = torch.device("cpu")
    fm = fcn.loop_masks(ds, pre, 2, ds.classes, None, cpu)
    t = fm.batch(torch.tensor([by_name["painted.tif"], by_name["plain.tif"]]), torch.tensor([[1.0, 1.0], [0.0, 1.0]]), cpu)
    np.testing.assert_array_equal(t[0].numpy(), np.stack([m == 1, m == 2]).astype(np.float32))
    assert t[1, 0].sum() == 0 and t[1, 1].sum() > 0  # unpainted: fluorescence mask of its label
    # without the mask column, masks/<stem>.tif is evaluation ground truth, never a training target
    (tmp_path / "out" / "labels.csv").write_text("path,labels\nimages/painted.tif,nucleus\n")
    gt = load_dataset(tmp_path / "out", channel_axis=0)
    assert gt.masks[0] is not None and not gt.has_target_mask(0)
    assert fcn.loop_masks(gt, pre, 2, gt.classes, None, cpu) is None
    # a manifest naming a mask that is not there says which line
    (tmp_path / "out" / "labels.csv").write_text("path,labels,mask\nimages/plain.tif,cytosol,masks/gone.tif\n")
    with pytest.raises(DataError, match="line 2.*gone.tif"):
        load_dataset(tmp_path / "out", channel_axis=0)


def test_exported_manifest_neutralises_formula_class_names_and_reads_them_back(tmp_path):
    from napari_cellclass.core.data import load_dataset

    s = AnnotationStore.open(tmp_path / "f.json", multilabel=True)
    for c in ("=HYPERLINK(x)", "plain"):
        s.add_class(c)
    for i, labels in enumerate((["=HYPERLINK(x)"], ["plain", "=HYPERLINK(x)"], ["plain"])):
        s.label_image(s.add_image(coded() + i, name=f"img{i}"), 0, labels)
    export_dataset(s, tmp_path / "out", layout="csv")
    with open(tmp_path / "out" / "labels.csv", newline="") as fh:
        cells = [r["labels"] for r in csv.DictReader(fh)]
    assert cells == ["'=HYPERLINK(x)", "'=HYPERLINK(x);plain", "plain"]  # no cell starts with '='
    ds = load_dataset(str(tmp_path / "out" / "labels.csv"))
    assert ds.classes == ["=HYPERLINK(x)", "plain"]
    assert sorted(map(tuple, (ds.labels[i] for i in range(len(ds))))) == [(0,), (0, 1), (1,)]
