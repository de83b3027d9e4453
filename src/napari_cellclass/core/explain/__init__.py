"""Where the evidence is: Grad-CAM family, CAM and FCN heat maps on the image grid.

One small module per method (``gradcam.py``, ``gradcampp.py``, ``layercam.py``,
``hirescam.py``, ``cam.py``, ``fcn.py``) over the shared hooks of ``base.py``;
``engine.py`` handles images, preprocessing geometry, tiles, ensembles and
normalisation; ``target_layers.py`` picks the layer; ``evaluate.py`` scores maps
against ground-truth masks.
"""

from __future__ import annotations

from .engine import explain, explain_batch, explain_steps
from .targets import resolve_targets
from .result import METHODS, ExplainResult, Progress

__all__ = ["explain", "explain_batch", "explain_steps", "resolve_targets", "ExplainResult", "Progress", "METHODS"]
