"""The Grad-CAM map of an exported package's cover (the models layer cannot import explain)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..models.bundle import ModelBundle


def gradcam_map(bundle: ModelBundle, crop: np.ndarray, value_max: float | None) -> np.ndarray:
    """(H, W) Grad-CAM map in [0, 1] of the predicted class on a float32 (C, H, W) crop."""
    from .engine import explain

    image = crop
    if value_max in (255.0, 65535.0):  # back to the pixel type, so meanstd scales it as it would the file
        image = np.clip(np.round(crop), 0, value_max).astype(np.uint8 if value_max == 255.0 else np.uint16)
    result = explain(bundle, image, "gradcam", channel_axis=0)
    return np.asarray(result.maps[0], np.float32)
