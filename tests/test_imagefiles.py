"""Reading TIFF/PNG/JPEG files and walking folders; every failure names the file."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from skimage.io import imsave

from napari_cellclass.core.errors import ImageError
from napari_cellclass.core.io.files import find_images, read_image
from napari_cellclass.core.io.images import iter_planes


def test_tiff_axes_are_honoured(tmp_path, rng):
    cyx = rng.integers(0, 4000, (5, 32, 40)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "c.tif", cyx, metadata={"axes": "CYX"})
    f = read_image(tmp_path / "c.tif")
    planes = list(iter_planes(f.data, f.channel_axis, rgb=f.rgb))
    assert len(planes) == 1 and planes[0].data.shape == (5, 32, 40)
    tyx = rng.integers(0, 4000, (3, 32, 40)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "t.tif", tyx, photometric="minisblack", metadata={"axes": "TYX"})
    f = read_image(tmp_path / "t.tif")
    assert len(list(iter_planes(f.data, f.channel_axis, rgb=f.rgb))) == 3


def test_png_and_jpeg(tmp_path, rng):
    rgb = rng.integers(0, 255, (30, 40, 3)).astype(np.uint8)
    imsave(tmp_path / "a.png", rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png").data, rgb)
    rgba = rng.integers(0, 255, (30, 40, 4)).astype(np.uint8)
    imsave(tmp_path / "b.png", rgba)
    f = read_image(tmp_path / "b.png")
    assert f.rgb and f.data.shape == (30, 40, 4)
    grey = rng.integers(0, 255, (30, 40)).astype(np.uint8)
    imsave(tmp_path / "g.jpg", grey)
    f = read_image(tmp_path / "g.jpg")
    assert f.data.shape == (30, 40) and not f.rgb


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("empty.png", b"", "empty"),
        ("text.png", b"this is not an image", "not a readable PNG"),
        ("broken.tif", b"II*\x00garbage", "cannot read"),
        ("image.bmp", b"BM", "unsupported file type"),
    ],
)
def test_unreadable_files(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageError, match=match) as err:
        read_image(path)
    assert name in str(err.value)


def test_truncated_png(tmp_path, rng):
    imsave(tmp_path / "full.png", rng.integers(0, 255, (64, 64, 3)).astype(np.uint8))
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.png"):
        read_image(tmp_path / "cut.png")


def test_missing_and_folder(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "nope.tif")
    with pytest.raises(ImageError, match="is a folder"):
        read_image(tmp_path)


def test_find_images_recursive(tmp_path, rng):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for p in ["x.png", "a/y.TIF", "a/b/z.jpeg", "a/b/notes.txt"]:
        (tmp_path / p).write_bytes(b"0")
    found = find_images([tmp_path, tmp_path / "x.png"])
    assert sorted(p.name for p in found) == ["x.png", "y.TIF", "z.jpeg"]
    with pytest.raises(ImageError, match="no such file or folder"):
        find_images([tmp_path / "missing"])
