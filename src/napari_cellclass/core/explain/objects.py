"""Explain segmented objects: one map per object, pasted back at the object's place.

Each object's crop (the same crop :func:`core.inference.objects.predict_objects`
classifies: bounding box + margin, optionally masked) is explained on its own for
its predicted class (or ``target``); its map, on the crop's pixel grid, is pasted
into a map of the whole image grid at the crop window.  Where windows of
neighbouring objects overlap the larger value wins, so no object's evidence is
hidden by another's.  Pixels outside every window are 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ..inference.options import RunOptions, run_options
from ..inference.predict import resolve_source
from ..io.images import inspect
from ..io.objects import (
    check_labels,
    check_margin,
    crop_window,
    label_plane,
    object_boxes,
    object_crop,
)
from ..models.bundle import ModelBundle
from .engine import explain


def explain_objects(
    bundle: ModelBundle,
    image: Any,
    labels: Any,
    margin: int = 0,
    mask: bool = False,
    method: str = "gradcam",
    target: str | int | None = None,
    *,
    frame: int = 0,
    objects: Iterable[int] | None = None,
    options: RunOptions | None = None,
) -> np.ndarray:
    """(H, W) float32 map of frame ``frame``: every object's (or the ``objects`` ids') map at its place."""
    o = run_options(options)
    margin = check_margin(margin)
    data, axis, rgb, name = resolve_source(image, 0, o.channel_axis)
    layout, _ = inspect(data, axis, None if o.channels else bundle.in_chans, rgb, name)
    plane = label_plane(check_labels(labels, layout, "labels", name), frame)
    wanted = None if objects is None else {int(v) for v in objects}
    out = np.zeros((layout.height, layout.width), np.float32)
    crop_opts = o.but(channel_axis=0)  # a crop is canonical (C, h, w), whatever the source's layout
    for box in object_boxes(plane, frame):
        if wanted is not None and box.label not in wanted:
            continue
        crop = object_crop(data, layout, plane, box, margin, mask, name)
        result = explain(bundle, crop, method, target, options=crop_opts)
        rows, cols = crop_window(box, margin, layout.height, layout.width)
        np.maximum(out[rows, cols], result.maps[0], out=out[rows, cols])
    return out
