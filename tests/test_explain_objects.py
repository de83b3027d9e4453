"""Grad-CAM per object, pasted back at each object's place on the image grid."""

from __future__ import annotations

import numpy as np

from napari_cellclass import explain
from napari_cellclass.core.explain.objects import explain_objects


def test_object_maps_are_the_crops_maps_at_their_place(tiny_bundle, rng):
    img = rng.integers(0, 255, (48, 56, 3)).astype(np.uint8)
    whole = explain_objects(tiny_bundle, img, np.ones((48, 56), np.uint8))
    np.testing.assert_allclose(whole, explain(tiny_bundle, img).maps[0], atol=1e-5)

    lab = np.zeros((48, 56), np.int32)
    lab[4:20, 6:26] = 3
    lab[30:46, 30:54] = 5
    maps = explain_objects(tiny_bundle, img, lab, margin=2)
    assert maps.shape == (48, 56) and maps.dtype == np.float32
    outside = np.ones((48, 56), bool)
    outside[2:22, 4:28] = outside[28:48, 28:56] = False
    assert (maps[outside] == 0).all()
    np.testing.assert_allclose(maps[2:22, 4:28], explain(tiny_bundle, img[2:22, 4:28]).maps[0], atol=1e-5)
    only5 = explain_objects(tiny_bundle, img, lab, margin=2, objects=[5])
    assert (only5[2:22, 4:28] == 0).all()
    np.testing.assert_allclose(only5[28:48, 28:56], maps[28:48, 28:56], atol=1e-6)
