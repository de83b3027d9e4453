"""What an explanation returns: maps on the input image's pixel grid plus how they were made."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..progress import Progress  # noqa: F401  (explain jobs yield it; re-exported for callers)

#: every method ``explain`` knows, in the order menus show them
METHODS: tuple[str, ...] = ("gradcam", "gradcam++", "layercam", "hirescam", "cam", "fcn")


@dataclass
class ExplainResult:
    """Explanation maps of one image (one plane of a stack).

    ``maps`` is float32 (K, H, W) in [0, 1] on the *input* image's pixel grid: the
    resize / letterbox / centre crop of the model's preprocessing is undone, so map
    pixel (y, x) is image pixel (y, x).  Grad-CAM-family maps are divided by their
    maximum over the whole image (tiles included, never per tile); FCN maps are the
    model's own per-class probabilities and are not rescaled.
    """

    maps: np.ndarray
    class_names: list[str]
    method: str
    layer: str | None
    #: source pixels per map cell (y, x) before upsampling: the true resolution of the map
    effective_resolution: tuple[float, float]
    channels: list[int]
    probabilities: np.ndarray
    layers: list[str] = field(default_factory=list)
    feature_grid: tuple[int, int] | None = None
    tiles: dict[str, Any] | None = None
    members: int = 1
    normalisation: str = ""
    name: str = ""
    frame: int = 0

    def metadata(self) -> dict[str, Any]:
        """JSON-able description (goes into layer metadata and the TIFF written by the CLI)."""
        return {
            "method": self.method,
            "layer": self.layer,
            "layers": list(self.layers),
            "classes": list(self.class_names),
            "effective_resolution_px": [round(float(v), 3) for v in self.effective_resolution],
            "feature_grid": list(self.feature_grid) if self.feature_grid else None,
            "tiles": self.tiles,
            "channels": list(self.channels),
            "members": self.members,
            "normalisation": self.normalisation,
            "probabilities": [round(float(p), 6) for p in np.asarray(self.probabilities).ravel()],
            "image": self.name,
            "frame": self.frame,
        }
