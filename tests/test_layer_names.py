"""Layer names lead with what tells layers apart (map kind and class, or the channel),
the image last, so the layer list's cut names still tell maps from channels; every
derived layer has its full description as a "title" in its metadata."""

from __future__ import annotations

import numpy as np


def test_maps_and_channels_differ_at_the_start_and_carry_a_title():
    from types import SimpleNamespace

    from napari_cellclass.app import layer_data as L
    from napari_cellclass.core.io.images import guess_layout

    image = "senescence NLO (synthetic) · COLO-704"
    data = np.zeros((3, 40, 40), np.float32)
    src = L.SourceInfo(image, data.shape, False, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    layout = guess_layout(data.shape, 0, name=image)
    result = SimpleNamespace(maps=np.zeros((1, 40, 40)), class_names=["senescent"], method="gradcam")
    out = L.channel_grid_layers(data, ["SRS", "TPEF", "transmission"], result, src, layout)
    names = [kw["name"] for _, kw, _ in out]
    assert names[:2] == [f"SRS · {image}", f"SRS: Grad-CAM senescent · {image}"]
    cut = {n[:20] for n in names}  # what a narrow layer list still shows
    assert len(cut) == len(names)
    titles = [kw["metadata"]["cellclass"]["title"] for _, kw, _ in out]
    assert titles[1] == f"Grad-CAM map of class 'senescent' for image '{image}' on channel SRS"
    assert titles[0] == f"channel SRS of image '{image}'"
    assert L.probability_map_name("cells", "round") == "p(round) · cells"
    assert L.map_name("cells", "gradcam++", "round") == "Grad-CAM++ round · cells"
