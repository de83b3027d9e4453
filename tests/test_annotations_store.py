"""Annotation store: classes, image-level/region/pixel labels, table, undo, reopen."""

from __future__ import annotations

import json
import os
import time
import warnings

import numpy as np
import pytest
import tifffile

from napari_cellclass.core.annotations import (FORMAT, AnnotationStore, AnnotationWarning, default_color,
                                               hex_to_rgba)
from napari_cellclass.core.errors import DataError


@pytest.fixture
def store(tmp_path):
    s = AnnotationStore.open(tmp_path / "ann.json")
    for name in ("healthy", "senescent", "dead"):
        s.add_class(name)
    return s


@pytest.fixture
def img():
    return (np.arange(40 * 50) % 251).astype(np.uint8).reshape(40, 50)


def reopen(s):
    return AnnotationStore.open(s.path)


def test_new_file_is_written_at_once_with_format_and_version(tmp_path):
    s = AnnotationStore.open(tmp_path / "sub" / "a.json", multilabel=True)
    doc = json.loads(s.path.read_text())
    assert doc["format"] == FORMAT and doc["version"] == 1 and doc["multilabel"] is True
    assert doc["classes"] == [] and doc["items"] == []


def test_classes_add_rename_colour_order_and_keys(store):
    assert store.class_names == ["healthy", "senescent", "dead"]
    assert [c.color for c in store.classes] == [default_color(i) for i in range(3)]
    assert store.class_for_key("1") == "healthy" and store.class_for_key(3) == "dead"
    assert store.class_for_key("4") is None and store.class_for_key("x") is None
    with pytest.raises(DataError, match="exists already"):
        store.add_class("Healthy")
    with pytest.raises(DataError, match="folder names"):
        store.add_class("a/b")
    store.set_class_color("dead", "#112233")
    assert store.classes[2].color == "#112233" and hex_to_rgba("#112233")[0] == pytest.approx(0x11 / 255)
    store.move_class("dead", 0)
    assert store.class_names == ["dead", "healthy", "senescent"] and store.class_for_key(1) == "dead"
    assert reopen(store).class_names == ["dead", "healthy", "senescent"]


def test_default_colours_are_stable_distinct_and_valid():
    colours = [default_color(i) for i in range(30)]
    assert len(set(colours)) == 30
    assert all(len(c) == 7 and c.startswith("#") for c in colours)
    assert default_color(12) == default_color(12)


def test_colour_survives_removal_of_an_earlier_class(store):
    before = store.classes[2].color
    store.remove_class("healthy")
    assert store.classes[1].color == before
    assert store.add_class("new").color == default_color(3)  # never reuses a colour index


def test_keys_label_images_single_label_replaces_and_toggles(store, img):
    k = store.add_image(img, name="cell")
    first = store.apply_key(k, 0, "1")
    assert store.image_labels(k, 0) == ("healthy",)
    second = store.apply_key(k, 0, "2")  # re-labelling replaces the labels, not the annotation
    assert store.image_labels(k, 0) == ("senescent",) and second.id == first.id  # issue 19: ids do not jump
    assert len(store.items_of(k, 0, "image")) == 1
    assert store.apply_key(k, 0, "2") is None  # same key again removes the label
    assert store.image_labels(k, 0) == () and not store.is_labelled(k, 0)
    with pytest.raises(DataError, match="no class has the key"):
        store.apply_key(k, 0, "7")
    with pytest.raises(DataError, match="single-label"):
        store.label_image(k, 0, ["healthy", "dead"])


def test_multilabel_toggles_and_keeps_class_order(tmp_path, img):
    s = AnnotationStore.open(tmp_path / "m.json", multilabel=True)
    for c in ("nucleus", "cytosol", "membrane"):
        s.add_class(c)
    k = s.add_image(img, name="p")
    s.apply_key(k, 0, 3)
    s.apply_key(k, 0, 1)
    assert s.image_labels(k, 0) == ("nucleus", "membrane")
    s.apply_key(k, 0, 3)
    assert s.image_labels(k, 0) == ("nucleus",)
    s.label_image(k, 0, ["cytosol", "membrane"], mode="add")
    assert reopen(s).image_labels(k, 0) == ("nucleus", "cytosol", "membrane")
    with pytest.raises(DataError, match="several labels"):
        s.set_multilabel(False)


def test_stack_frames_are_labelled_separately(store):
    stack = np.zeros((12, 32, 32), np.uint16)
    k = store.add_image(stack, name="movie")
    assert store.layout(k).n_frames == 12
    store.apply_key(k, 3, "3")
    assert store.image_labels(k, 3) == ("dead",) and store.image_labels(k, 2) == ()
    with pytest.raises(DataError, match="frame 12 does not exist"):
        store.apply_key(k, 12, "1")


def test_rename_relabels_items_and_masks(store, img):
    k = store.add_image(img, name="cell")
    store.apply_key(k, 0, "2")
    r = store.add_rectangle(k, 0, "senescent", (1, 1, 10, 10))
    mask = np.zeros(img.shape, np.uint8)
    mask[:5, :5] = 2
    store.set_pixel_labels(k, 0, mask)
    store.rename_class("senescent", "old")
    s2 = reopen(store)
    assert s2.image_labels(k, 0) == ("old",) and s2.item(r.id).labels == ("old",)
    assert s2.items_of(k, 0, "pixels")[0].labels == ("old",)
    np.testing.assert_array_equal(s2.pixel_labels(k, 0), mask)


def test_remove_class_needs_an_explicit_choice_for_its_items(store, img):
    k = store.add_image(img, name="cell")
    store.apply_key(k, 0, "1")
    p = store.add_point(k, 0, "healthy", (20, 20), 16)
    store.add_point(k, 0, "dead", (10, 10), 16)
    with pytest.raises(DataError, match="still has 2 annotation"):
        store.remove_class("healthy")
    assert store.class_names == ["healthy", "senescent", "dead"]  # nothing changed
    assert store.remove_class("healthy", reassign_to="dead") == 2
    assert store.item(p.id).labels == ("dead",) and store.image_labels(k, 0) == ("dead",)
    assert store.remove_class("dead", delete_items=True) == 3
    assert store.items == [] and store.class_names == ["senescent"]
    assert store.remove_class("senescent") == 0


def test_remove_class_in_multilabel_keeps_items_with_other_labels(tmp_path, img):
    s = AnnotationStore.open(tmp_path / "m.json", multilabel=True)
    s.add_class("a"), s.add_class("b")
    k = s.add_image(img, name="x")
    s.label_image(k, 0, ["a", "b"])
    mask = np.zeros(img.shape, np.uint8)
    mask[:3] = 1
    mask[-3:] = 2
    s.set_pixel_labels(k, 0, mask)
    s.remove_class("a", delete_items=True)
    assert s.image_labels(k, 0) == ("b",)
    pix = s.pixel_labels(k, 0)
    assert (pix[:3] == 0).all() and (pix[-3:] == 1).all()  # "b" is class 0 now -> value 1


def test_regions_points_and_shapes(store, img):
    k = store.add_image(img, name="cell")
    r = store.add_rectangle(k, 0, 1, (12, 30, 2, 4))  # corners in any order
    assert r.box == (2.0, 4.0, 12.0, 30.0) and r.labels == ("senescent",)
    pg = store.add_polygon(k, 0, "dead", [(0, 0), (0, 10), (10, 0)])
    pt = store.add_point(k, 0, "healthy", (39, 49), (8, 6))
    assert pt.size == (8, 6)
    sq = store.add_shape(k, 0, "dead", "rectangle", [(1, 1), (1, 9), (5, 9), (5, 1)])
    assert sq.kind == "rectangle" and sq.box == (1.0, 1.0, 5.0, 9.0)
    rot = store.add_shape(k, 0, "dead", "rectangle", [(5, 0), (10, 5), (5, 10), (0, 5)])
    assert rot.kind == "polygon"
    with pytest.raises(DataError, match="cannot be a region"):
        store.add_shape(k, 0, "dead", "line", [(0, 0), (5, 5)])
    with pytest.raises(DataError, match="outside"):
        store.add_rectangle(k, 0, 0, (100, 100, 120, 120))
    with pytest.raises(DataError, match="outside"):
        store.add_point(k, 0, 0, (-3, 4), 8)
    with pytest.raises(DataError, match="no class named"):
        store.add_point(k, 0, "nope", (3, 4), 8)
    s2 = reopen(store)
    assert [it.kind for it in s2.items] == ["rectangle", "polygon", "point", "rectangle", "polygon"]
    assert s2.item(pg.id).vertices == ((0.0, 0.0), (0.0, 10.0), (10.0, 0.0))
    assert s2.item(pt.id).center == (39.0, 49.0)
    assert store.relabel(r.id, "healthy").labels == ("healthy",)


def test_pixel_labels_roundtrip_compressed_tiff_and_empty_mask_removes(store, img):
    k = store.add_image(img, name="cell")
    mask = np.zeros(img.shape, np.int32)
    mask[10:20, 5:15] = 3
    mask[0:4, 0:4] = 1
    item = store.set_pixel_labels(k, 0, mask)
    assert item.labels == ("healthy", "dead")
    path = store.folder / item.mask
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].dtype == np.uint8 and tif.pages[0].compression != 1
    np.testing.assert_array_equal(reopen(store).pixel_labels(k, 0), mask)
    with pytest.raises(DataError, match="0..3"):
        store.set_pixel_labels(k, 0, mask + 1)
    with pytest.raises(DataError, match="shape"):
        store.set_pixel_labels(k, 0, mask[:10])
    assert store.set_pixel_labels(k, 0, np.zeros_like(mask)) is None
    assert store.pixel_labels(k, 0) is None
    store.undo()
    np.testing.assert_array_equal(store.pixel_labels(k, 0), mask)  # the old mask file was kept for undo
    assert len(list(store.masks_folder.glob("*.tif"))) == 1


def test_masks_no_longer_referenced_are_deleted_on_reopen(store, img):
    k = store.add_image(img, name="cell")
    for v in (1, 2, 3):
        store.set_pixel_labels(k, 0, np.full(img.shape, v, np.uint8))
    # strokes alternate between two files (issue 19: not one file per stroke); undo keeps the rest
    assert len(list(store.masks_folder.glob("*.tif"))) == 2
    reopen(store)
    # another viewer may still need a fresh one: only masks older than a day are collected
    assert len(list(store.masks_folder.glob("*.tif"))) == 2
    day_ago = time.time() - 25 * 3600
    for f in store.masks_folder.glob("*.tif"):
        os.utime(f, (day_ago, day_ago))
    reopen(store)
    assert len(list(store.masks_folder.glob("*.tif"))) == 1


def test_table_counts_rows_delete_and_undo(store, img):
    k = store.add_image(img, name="cell")
    store.apply_key(k, 0, "1")
    r = store.add_rectangle(k, 0, "dead", (2, 3, 10, 20))
    p = store.add_point(k, 0, "dead", (30, 40), 10)
    assert store.counts() == {"healthy": 1, "senescent": 0, "dead": 2}
    assert store.counts_by_kind()["dead"]["point"] == 1
    rows = {row.id: row for row in store.rows()}
    assert rows[r.id].bbox == (2, 3, 10, 20) and rows[r.id].center == (6, 11.5)
    assert rows[p.id].bbox == (25, 35, 34, 44) and rows[p.id].center == (30, 40)
    assert rows[min(rows)].bbox == (0, 0, 39, 49) and rows[r.id].image_name == "cell"
    assert store.delete(r.id) == 1 and store.counts()["dead"] == 1
    with pytest.raises(DataError, match="no annotation"):
        store.delete(r.id)
    assert store.undo() == "delete 1 annotation(s)"
    assert reopen(store).item(r.id).box == (2, 3, 10, 20)  # undo is written through too
    while store.can_undo:
        store.undo()
    assert store.items == [] and store.class_names == []
    assert store.undo() is None


def test_change_callbacks(store, img):
    seen = []
    unsubscribe = store.on_change(seen.append)
    k = store.add_image(img, name="cell")
    store.apply_key(k, 0, "1")
    unsubscribe()
    store.apply_key(k, 0, "2")
    assert seen == ["label cell frame 0: healthy"]


def test_in_memory_image_saved_once_and_usable_after_reopen(store, img):
    k = store.add_image(img, name="my sample!")
    assert store.add_image(img.copy(), name="other name") == k  # same pixels → same image
    rec = store.image(k)
    assert rec.origin == "memory" and rec.path == f"images/{k}.tif"
    np.testing.assert_array_equal(tifffile.imread(store.folder / rec.path), img)
    other = store.add_image(img[::-1].copy(), name="my sample!")
    assert other != k
    store.apply_key(k, 0, 1)
    s2 = reopen(store)
    np.testing.assert_array_equal(np.asarray(s2.pixels(k)), img)
    assert s2.find_image(name="my sample!") == k


def test_file_image_by_path_relative_and_change_warning(store, tmp_path, img):
    f = tmp_path / "raw" / "a.tif"
    f.parent.mkdir()
    tifffile.imwrite(f, img)
    k = store.add_image(path=f)
    rec = store.image(k)
    assert rec.path == "raw/a.tif" and rec.origin == "file" and rec.shape == img.shape
    assert store.add_image(img, path=f) == k and store.find_image(path=f) == k
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert reopen(store).check_images() == []
    tifffile.imwrite(f, img[::-1])  # same size, other pixels
    with pytest.warns(AnnotationWarning, match="changed after it was annotated"):
        problems = reopen(store).check_images()
    assert [p.kind for p in problems] == ["changed"]
    store.accept_image_change(k)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert store.check_images() == []
    f.unlink()
    with pytest.warns(AnnotationWarning, match="missing"):
        assert [p.kind for p in reopen(store).check_images()] == ["missing"]


def test_rgb_and_channel_axis_are_settled_at_registration(store):
    rgb = np.zeros((30, 40, 3), np.uint8)
    assert store.layout(store.add_image(rgb, name="rgb")).channel_axis == 2
    chw = np.zeros((4, 30, 40), np.uint16)
    assert store.layout(store.add_image(chw, name="chw")).n_channels == 4
    stack = np.zeros((4, 30, 40), np.uint16) + 1
    assert store.layout(store.add_image(stack, name="stack", channel_axis="none")).n_frames == 4
