"""Per-object classification from a label image: crops, validation, the table."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cellclass import (
    ObjectTable,
    predict,
    predict_objects,
    predict_objects_steps,
)
from napari_cellclass.core.errors import ImageError
from napari_cellclass.core.io.images import inspect
from napari_cellclass.core.io.objects import (
    check_labels,
    crop_window,
    object_boxes,
    object_crop,
)


def _labels(h: int = 40, w: int = 50) -> np.ndarray:
    lab = np.zeros((h, w), np.int32)
    lab[2:10, 3:12] = 1
    lab[20:30, 30:49] = 7  # ids need not be consecutive
    lab[35, 0] = 3  # a 1-pixel object on the border
    return lab


def test_whole_image_object_equals_predict(tiny_bundle, rng):
    img = rng.integers(0, 255, (40, 50, 3)).astype(np.uint8)
    table = predict_objects(tiny_bundle, img, np.ones((40, 50), np.uint8))
    assert len(table) == 1 and table.rows[0].box.bbox == (0, 0, 40, 50)
    np.testing.assert_allclose(table.probs[0], predict(tiny_bundle, img)[0], atol=1e-6)


def test_crop_equals_predict_of_the_crop(tiny_bundle, rng):
    img = rng.integers(0, 255, (40, 50, 3)).astype(np.uint8)
    lab = _labels()
    table = predict_objects(tiny_bundle, img, lab, margin=2)
    assert list(table.labels) == [1, 3, 7]
    cols = table.columns()
    assert list(cols["area"]) == [72, 1, 190]
    assert cols["bbox_r0"][1] == 35 and cols["centroid_x"][1] == 0.0
    # object 7: rows 20..29, cols 30..48 grown by 2 -> rows 18..31, cols 28..49 (clipped at the border)
    np.testing.assert_allclose(table.probs[2], predict(tiny_bundle, img[18:32, 28:50])[0], atol=1e-6)
    np.testing.assert_allclose(cols["confidence"], table.probs.max(1))
    assert set(cols["predicted_class"]) <= {"a", "b", "c"}
    assert all(len(v) == 3 for v in cols.values())


def test_mask_zeroes_background_and_neighbours(rng):
    img = rng.integers(1, 255, (40, 50)).astype(np.uint8)
    lab = _labels()
    lab[10, 3:12] = 2  # a neighbour just under object 1
    layout, _ = inspect(img, "auto", 1)
    box = next(b for b in object_boxes(lab) if b.label == 1)
    crop = object_crop(img, layout, lab, box, margin=1, mask=True)
    rows, cols = crop_window(box, 1, 40, 50)
    inside = lab[rows, cols] == 1
    assert crop.dtype == np.uint8 and crop.shape == (1, 10, 11)
    assert (crop[0][~inside] == 0).all() and (crop[0][inside] == img[rows, cols][inside]).all()
    plain = object_crop(img, layout, lab, box, margin=1)
    assert (plain[0] == img[rows, cols]).all()


def test_zero_objects_give_an_empty_table(tiny_bundle, rng):
    img = rng.integers(0, 255, (40, 50, 3)).astype(np.uint8)
    table = predict_objects(tiny_bundle, img, np.zeros((40, 50), np.uint16))
    assert isinstance(table, ObjectTable) and len(table) == 0
    assert table.probs.shape == (0, 3) and all(len(v) == 0 for v in table.columns().values())


@pytest.mark.parametrize(("labels", "words"), [
    (np.zeros((40, 49), np.int32), "shape"),
    (np.ones((40, 50), np.float32), "floating-point"),
    (np.full((40, 50), -1, np.int32), "negative"),
    (np.zeros((2, 40, 50), np.int32), "frames"),
])
def test_bad_label_images_say_what_to_do(tiny_bundle, rng, labels, words):
    img = rng.integers(0, 255, (40, 50, 3)).astype(np.uint8)
    with pytest.raises(ImageError, match=words) as err:
        predict_objects(tiny_bundle, img, labels)
    assert err.value.fix


def test_bad_margin(tiny_bundle, rng):
    with pytest.raises(ImageError, match="margin"):
        predict_objects(tiny_bundle, rng.random((40, 50)).astype(np.float32), _labels(), margin=-1)


def test_stack_with_label_stack_and_one_label_image(tiny_bundle, rng):
    stack = rng.integers(0, 255, (3, 40, 50)).astype(np.uint8)
    lab = np.stack([_labels(), np.zeros((40, 50), np.int32), _labels()])
    lab[2][lab[2] == 7] = 0
    table = predict_objects(tiny_bundle, stack, lab, margin=1, channel_axis="none")  # 3 frames, not RGB
    cols = table.columns()
    assert list(zip(cols["frame"], cols["label"])) == [(0, 1), (0, 3), (0, 7), (2, 1), (2, 3)]
    np.testing.assert_allclose(table.probs[3], predict(tiny_bundle, stack[2, 1:11, 2:13], channel_axis="none")[0], atol=1e-6)
    same = predict_objects(tiny_bundle, stack, _labels(), channel_axis="none")  # one segmentation for every frame
    assert len(same) == 9
    with pytest.raises(ImageError, match="frames"):
        predict_objects(tiny_bundle, stack, lab[:2], channel_axis="none")


def test_steps_stream_batches_and_stop(tiny_bundle, rng):
    img = rng.integers(0, 255, (64, 64)).astype(np.uint8)
    lab = np.zeros((64, 64), np.int32)
    for i in range(16):  # a 4x4 grid of 8x8 objects
        r, c = divmod(i, 4)
        lab[r * 16:r * 16 + 8, c * 16:c * 16 + 8] = i + 1
    from napari_cellclass.core.inference.options import RunOptions

    job = predict_objects_steps(tiny_bundle, img, lab, options=RunOptions(batch_size=5))
    first = next(job)
    assert (first.done, first.total) == (0, 16)
    seen = [next(job) for _ in range(2)]
    assert [len(e.item) for e in seen] == [5, 5] and seen[-1].done == 10
    job.close()  # a Cancel: the rest is never computed, the bundle's lock is free again
    assert tiny_bundle.lock.acquire(timeout=5)
    tiny_bundle.lock.release()
    full = predict_objects(tiny_bundle, img, lab)
    assert len(full) == 16
    np.testing.assert_allclose(np.concatenate([[r.probs for r in e.item] for e in seen]).reshape(10, 3), full.probs[:10],
                               atol=1e-6)


def test_labels_layer_like_and_bool_mask(tiny_bundle, rng):
    img = rng.integers(0, 255, (40, 50, 3)).astype(np.uint8)

    class Labels:  # what a napari Labels layer offers
        data = _labels() > 0

    layout, _ = inspect(img, "auto", 3)
    assert check_labels(Labels(), layout).dtype == np.bool_
    table = predict_objects(tiny_bundle, img, Labels.data)
    assert len(table) == 1 and table.rows[0].box.area == int(Labels.data.sum())
