"""Issue 19 item 8 at the store: paint strokes reuse a plane's mask files (no new file
per stroke) and annotation ids do not jump — with undo, crashes and old files intact."""

from __future__ import annotations

import errno
import json
import os
import time

import numpy as np
import pytest

from napari_cellclass.core.annotations import AnnotationSaveError, AnnotationStore
from napari_cellclass.core.errors import DataError


@pytest.fixture
def store(tmp_path):
    s = AnnotationStore.open(tmp_path / "ann.json")
    for name in ("a", "b", "c"):
        s.add_class(name)
    return s


@pytest.fixture
def key(store):
    return store.add_image((np.arange(32 * 48) % 251).astype(np.uint8).reshape(32, 48), name="cell")


def strokes(n: int) -> list[np.ndarray]:
    """What the Labels layer holds after each of ``n`` strokes (each adds a dab)."""
    masks, m = [], np.zeros((32, 48), np.uint8)
    for i in range(n):
        m = m.copy()
        m[(2 * i) % 30:(2 * i) % 30 + 3, (3 * i) % 45:(3 * i) % 45 + 3] = 1 + i % 3
        m[31, i] = 1  # every stroke also changes class 1, so no stroke looks like another through a value table
        masks.append(m)
    return masks


def mask_files(s: AnnotationStore) -> list[str]:
    return sorted(p.name for p in s.masks_folder.glob("*.tif"))


def test_sixteen_strokes_use_two_files_keep_one_id_and_undo_restores_every_stroke(store, key):
    masks = strokes(16)
    ids = {store.set_pixel_labels(key, 0, m).id for m in masks}
    assert len(ids) == 1 and len(store.items_of(key, 0, "pixels")) == 1
    assert mask_files(store) == ["cell-f0-a.tif", "cell-f0-b.tif"]  # not 16
    np.testing.assert_array_equal(AnnotationStore.open(store.path).pixel_labels(key, 0), masks[-1])
    for want in reversed(masks[:-1]):  # each undo brings back the stroke before, on disk too
        assert store.undo().startswith("paint")
        np.testing.assert_array_equal(store.pixel_labels(key, 0), want)
        np.testing.assert_array_equal(AnnotationStore.open(store.path).pixel_labels(key, 0), want)
    assert store.undo().startswith("paint") and store.pixel_labels(key, 0) is None
    assert len(mask_files(store)) <= 2


def test_undo_across_other_changes_and_a_cleared_plane_restores_the_pixels(store, key):
    m1, m2, m3 = strokes(3)
    store.set_pixel_labels(key, 0, m1)
    store.add_rectangle(key, 0, "a", (1, 1, 5, 5))
    store.set_pixel_labels(key, 0, m2)
    store.set_pixel_labels(key, 0, np.zeros_like(m1))  # erased
    store.set_pixel_labels(key, 0, m3)  # overwrites the file m1 lives in
    for want in (None, m2, m1, m1):
        store.undo()
        got = store.pixel_labels(key, 0)
        assert (got is None) if want is None else np.array_equal(got, want)
    np.testing.assert_array_equal(AnnotationStore.open(store.path).pixel_labels(key, 0), m1)


def test_a_crash_while_a_stroke_is_written_keeps_the_previous_mask(store, key, monkeypatch):
    m1, m2, m3 = strokes(3)
    store.set_pixel_labels(key, 0, m1)
    store.set_pixel_labels(key, 0, m2)
    real = os.replace

    def crash_on(suffix):
        def replace(src, dst, *a, **kw):
            if str(dst).endswith(suffix):
                raise OSError(errno.EIO, "killed mid-write")
            return real(src, dst, *a, **kw)
        return replace

    # the mask file cannot be written: nothing changes, the previous mask is intact
    monkeypatch.setattr(os, "replace", crash_on(".tif"))
    with pytest.raises(AnnotationSaveError, match="painted labels"):
        store.set_pixel_labels(key, 0, m3)
    np.testing.assert_array_equal(store.pixel_labels(key, 0), m2)
    np.testing.assert_array_equal(AnnotationStore.open(store.path).pixel_labels(key, 0), m2)
    # the mask was written but the annotation file was not (killed in between): the file
    # on disk still points at a complete, unchanged mask — the stroke went to the other slot
    monkeypatch.setattr(os, "replace", crash_on(".json"))
    with pytest.raises(AnnotationSaveError):
        store.set_pixel_labels(key, 0, m3)
    monkeypatch.undo()
    np.testing.assert_array_equal(AnnotationStore.open(store.path).pixel_labels(key, 0), m2)
    store.save()  # once the cause is gone the stroke is saved
    np.testing.assert_array_equal(AnnotationStore.open(store.path).pixel_labels(key, 0), m3)


def test_files_with_one_mask_per_stroke_still_open_and_their_masks_are_collected(store, key):
    m1, m2 = strokes(2)
    store.set_pixel_labels(key, 0, m1)
    # as an earlier version wrote it: the mask named after the item id
    item = store.items_of(key, 0, "pixels")[0]
    legacy = store.masks_folder / f"cell-f0-{item.id}.tif"
    os.replace(store.folder / item.mask, legacy)
    doc = json.loads(store.path.read_text())
    doc["items"][-1]["mask"] = f"{store.masks_folder.name}/{legacy.name}"
    store.path.write_text(json.dumps(doc))
    old = AnnotationStore.open(store.path)
    np.testing.assert_array_equal(old.pixel_labels(key, 0), m1)
    assert old.set_pixel_labels(key, 0, m2).id == item.id  # repainting keeps the id
    day_ago = time.time() - 25 * 3600
    os.utime(legacy, (day_ago, day_ago))
    reopened = AnnotationStore.open(old.path)  # opening collects unreferenced, day-old masks
    np.testing.assert_array_equal(reopened.pixel_labels(key, 0), m2)
    assert not legacy.exists() and mask_files(reopened) == ["cell-f0-a.tif"]


def test_ids_stay_consecutive_through_relabels_repaints_undo_and_failures(store, key, monkeypatch):
    import tempfile

    other = store.add_image(np.zeros((32, 48), np.uint8), name="other")
    r = store.add_rectangle(key, 0, "a", (1, 1, 5, 5))
    for k in ("1", "2", "3", "1"):
        store.apply_key(key, 0, k)  # relabelling the image: one annotation, one id
    for m in strokes(4):
        store.set_pixel_labels(key, 0, m)  # repainting the plane: one annotation, one id
    p = store.add_point(key, 0, "b", (10, 10), 8)
    store.undo()  # an undone annotation gives its id back

    def full(*a, **kw):
        raise OSError(errno.ENOSPC, "full")

    monkeypatch.setattr(tempfile, "mkstemp", full)
    with pytest.raises(AnnotationSaveError):
        store.set_pixel_labels(other, 0, np.ones((32, 48), np.uint8))  # fails: takes no id
    monkeypatch.undo()
    with pytest.raises(DataError):
        store.add_rectangle(key, 0, "a", (100, 100, 120, 120))  # outside: refused
    q = store.add_point(key, 0, "c", (12, 12), 8)
    assert q.id == p.id
    ids = [row.id for row in store.rows()]
    assert ids == list(range(1, len(ids) + 1)) == [r.id, r.id + 1, r.id + 2, q.id]
    assert [row.id for row in AnnotationStore.open(store.path).rows()] == ids


def test_a_stale_window_never_overwrites_the_other_windows_mask(store, key):
    m1, m2 = strokes(2)
    m3 = m2.copy()
    m3[20:25, 30:35] = 1  # in a class m2 has, so it would show through m2's value table
    store.set_pixel_labels(key, 0, m1)
    second = AnnotationStore.open(store.path)
    store.set_pixel_labels(key, 0, m2)  # the first window moves to the other slot
    with pytest.raises(AnnotationSaveError, match="changed by another program"):
        second.set_pixel_labels(key, 0, m3)  # would have gone to that slot
    np.testing.assert_array_equal(AnnotationStore.open(store.path).pixel_labels(key, 0), m2)
    second.save_as(store.folder / "mine.json")  # the refused stroke is not lost
    np.testing.assert_array_equal(AnnotationStore.open(store.folder / "mine.json").pixel_labels(key, 0), m3)


def test_moving_a_region_keeps_its_id_class_and_place_in_one_undo_step(store, key):
    r = store.add_rectangle(key, 0, "a", (1, 1, 5, 5))
    p = store.add_point(key, 0, "b", (10, 10), (8, 6))
    moved = store.move_region(r.id, key, 0, "polygon", [(2, 2), (2, 9), (9, 2)])
    assert (moved.id, moved.kind, moved.labels, moved.created) == (r.id, "polygon", r.labels, r.created)
    assert store.move_region(p.id, key, 0, "point", [(20, 30)]).size == (8, 6)
    assert [it.id for it in store.items] == [r.id, p.id] and store.item(p.id).center == (20.0, 30.0)
    with pytest.raises(DataError, match="outside"):
        store.move_region(r.id, key, 0, "rectangle", [(100, 100), (100, 120), (120, 120), (120, 100)])
    assert store.item(r.id) == moved  # a refused move changes nothing
    assert store.undo() == f"move point {p.id}" and store.item(p.id) == p
    store.undo()
    assert store.items == [r, p]
    assert [it.id for it in AnnotationStore.open(store.path).items] == [r.id, p.id]
    store.set_pixel_labels(key, 0, strokes(1)[0])
    with pytest.raises(DataError, match="not a region"):
        store.move_region(store.items_of(key, 0, "pixels")[0].id, key, 0, "point", [(1, 1)])
