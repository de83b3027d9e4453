"""A folder as one lazy stack: planes read on demand, padding recorded, maps back."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from skimage.io import imsave

from napari_cellclass.core.annotations import AnnotationStore, training_samples
from napari_cellclass.core.errors import ImageError
from napari_cellclass.core.io.gallery import FolderStack

from badinputs import _OK, FILE_CASES


@pytest.fixture
def grey_folder(tmp_path):
    rng = np.random.default_rng(0)
    sizes = [(20, 30), (32, 16), (24, 24), (12, 40)]
    imgs = []
    for i, (h, w) in enumerate(sizes):
        a = rng.integers(1, 255, (h, w), dtype=np.uint8)
        tifffile.imwrite(tmp_path / f"im{i}.tif", a)
        imgs.append(a)
    return tmp_path, imgs


def test_shape_padding_and_sizes_without_reading_pixels(grey_folder):
    folder, imgs = grey_folder
    st = FolderStack.from_folder(folder)
    assert st.shape == (4, 32, 40) and st.dtype == np.uint8 and st.ndim == 3 and len(st) == 4
    assert st.sizes == [(20, 30), (32, 16), (24, 24), (12, 40)]
    assert st.reads == 0  # only headers so far
    for i, a in enumerate(imgs):
        plane = st[i]
        h, w = a.shape
        np.testing.assert_array_equal(plane[:h, :w], a)
        assert plane.shape == (32, 40) and not plane[h:].any() and not plane[:, w:].any()
        np.testing.assert_array_equal(st.original(i, plane), a)
    assert st.contrast_limits() == (0.0, 255.0)


def test_reads_only_the_requested_plane_and_caches_a_few(grey_folder):
    folder, imgs = grey_folder
    st = FolderStack.from_folder(folder, cache=2)
    st[2]
    assert st.reads == 1
    np.testing.assert_array_equal(st[2, 5:10, 3], imgs[2][5:10, 3])  # cached
    assert st.reads == 1
    st[1], st[0], st[2]
    assert st.reads == 4  # plane 2 fell out of the 2-file cache
    nocache = FolderStack.from_folder(folder, cache=0)
    nocache[3], nocache[3]
    assert nocache.reads == 2
    sub = nocache[1:3, :4, :4]
    assert sub.shape == (2, 4, 4) and nocache.reads == 4
    assert nocache[-1].shape == (32, 40)
    assert nocache[..., 0].shape == (4, 32)
    with pytest.raises(IndexError):
        nocache[4]
    assert np.asarray(nocache).shape == (4, 32, 40)


def test_rgb_png_and_greyscale_mix_and_stack_files(tmp_path):
    rgb = np.zeros((20, 25, 3), np.uint8)
    rgb[..., 1] = 7
    imsave(tmp_path / "a.png", rgb, check_contrast=False)
    grey = np.full((10, 30), 9, np.uint8)
    imsave(tmp_path / "b.png", grey, check_contrast=False)
    st = FolderStack.from_folder(tmp_path)
    assert st.shape == (2, 20, 30, 3) and st.rgb
    np.testing.assert_array_equal(st[0][:20, :25], rgb)
    np.testing.assert_array_equal(st[1][:10, :30], np.repeat(grey[..., None], 3, axis=2))

    movie = np.arange(12 * 16 * 16, dtype=np.uint16).reshape(12, 16, 16)
    d = tmp_path / "movies"
    d.mkdir()
    tifffile.imwrite(d / "m.tif", movie, metadata={"axes": "TYX"})
    tifffile.imwrite(d / "n.tif", movie[:2, :10, :10], metadata={"axes": "TYX"})
    ms = FolderStack.from_folder(d)
    assert ms.shape == (14, 16, 16) and ms.source(12) == (d / "n.tif", 0)
    np.testing.assert_array_equal(ms[5], movie[5])
    assert ms.index_of(d / "n.tif", 1) == 13 and ms.sizes[13] == (10, 10)


def test_multichannel_and_mismatched_channels(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.ones((4, 16, 16), np.uint16), metadata={"axes": "CYX"}, photometric="minisblack")
    tifffile.imwrite(tmp_path / "b.tif", np.ones((4, 20, 12), np.uint16), metadata={"axes": "CYX"}, photometric="minisblack")
    st = FolderStack.from_folder(tmp_path)
    assert st.shape == (2, 4, 20, 16) and st.channel_axis == 1
    assert st[1].shape == (4, 20, 16)
    tifffile.imwrite(tmp_path / "c.tif", np.ones((2, 16, 16), np.uint16), metadata={"axes": "CYX"}, photometric="minisblack")
    with pytest.raises(ImageError, match="different channel counts"):
        FolderStack.from_folder(tmp_path)
    with pytest.raises(ImageError, match="no images"):
        FolderStack([])


def test_annotating_through_the_gallery_maps_back_to_the_files(grey_folder, tmp_path):
    folder, imgs = grey_folder
    st = FolderStack.from_folder(folder)
    s = AnnotationStore.open(tmp_path / "ann.json")
    s.add_class("x")
    path, frame = st.source(3)
    key = s.add_image(path=path)
    # a box drawn on the padded stack plane: the part over padding is dropped
    s.add_rectangle(key, frame, "x", (8, 30, 25, 39))
    (sample,) = training_samples(s)
    np.testing.assert_array_equal(sample.image[0], imgs[3][8:12, 30:40])
    assert st.reads == 0  # the store reads the file itself


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_a_bad_file_does_not_cost_the_folder(case, tmp_path):
    """Issue 7's file cases in a folder: files with unreadable headers are left out,
    a file that fails only when decoded becomes a blank plane reported once; the
    good files stay readable; a folder of bad files only is a clear error."""
    name, write, expected = FILE_CASES[case]
    good = np.full((64, 64, 3), 77, np.uint8)
    imsave(tmp_path / "a_good.png", good, check_contrast=False)
    imsave(tmp_path / "z_good.png", good, check_contrast=False)
    write(tmp_path / name)
    reported = []
    st = FolderStack.from_folder(tmp_path, on_error=lambda p, why: reported.append((p.name, why)))
    planes = [st[i] for i in range(len(st))] + [st[i] for i in range(len(st))]  # twice: reported once
    for p in ("a_good.png", "z_good.png"):
        np.testing.assert_array_equal(planes[st.index_of(tmp_path / p)][:64, :64], good)
    if expected == _OK:
        assert len(st) == 3 and not st.unreadable and not reported
        return
    assert (tmp_path / name) in st.unreadable and name in st.unreadable[tmp_path / name]
    if (tmp_path / name) in st.paths:  # passed its header, failed to decode: blank, reported once
        assert not planes[st.index_of(tmp_path / name)].any()
        assert len(reported) == 1 and reported[0][0] == name and name in reported[0][1]
    else:
        assert len(st) == 2 and not reported
    for p in ("a_good.png", "z_good.png"):
        (tmp_path / p).unlink()
    if (tmp_path / name) not in st.paths:
        with pytest.raises(ImageError, match="none of the 1 image file"):
            FolderStack.from_folder(tmp_path)
