"""Which classes to explain and how: method names, layer lists, target classes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..models.bundle import ModelBundle
from ..errors import CellclassError
from .result import METHODS

_ALIASES = {"grad-cam": "gradcam", "gradcampp": "gradcam++", "grad-cam++": "gradcam++", "gradcamplusplus": "gradcam++",
            "layer-cam": "layercam", "hires-cam": "hirescam", "hirescam": "hirescam"}
Target = Any  # None | "all" | class name | class index | list of names/indices


def method_name(method: str) -> str:
    m = _ALIASES.get(str(method).strip().lower(), str(method).strip().lower())
    if m not in METHODS:
        raise CellclassError(f"unknown explanation method {method!r}", f"use one of {', '.join(METHODS)}")
    return m


def layer_list(layer: str | Sequence[str] | None) -> list[str | None]:
    """None → [None] (automatic); 'a,b' or ['a', 'b'] → fuse several layers."""
    if layer is None:
        return [None]
    items = layer.split(",") if isinstance(layer, str) else list(layer)
    items = [str(i).strip() for i in items if str(i).strip() and str(i).strip() != "auto"]
    return items or [None]


def class_index(bundle: ModelBundle, name: Any) -> int:
    if isinstance(name, (int, np.integer)) and not isinstance(name, bool):
        if not 0 <= int(name) < bundle.num_classes:
            raise CellclassError(f"class index {name} does not exist (the model has {bundle.num_classes})")
        return int(name)
    text = str(name).strip()
    if text in bundle.classes:
        return bundle.classes.index(text)
    lower = [c.lower() for c in bundle.classes]
    if text.lower() in lower:
        return lower.index(text.lower())
    raise CellclassError(f"the model has no class {text!r}", f"choose one of: {', '.join(bundle.classes)}, or 'all'")


def resolve_targets(bundle: ModelBundle, spec: Target, probs: np.ndarray | None) -> list[int]:
    """Class indices to explain for one image: predicted (None), 'all', a name or a list.

    Multi-label models explain every class at or above its threshold (the top class
    when none is).
    """
    if isinstance(spec, str) and spec.strip().lower() == "all":
        return list(range(bundle.num_classes))
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "predicted")):
        if probs is None:
            raise CellclassError("internal error: the predicted class is not known yet")
        if bundle.multilabel:
            present = [k for k, (p, t) in enumerate(zip(probs, bundle.class_thresholds())) if p >= t]
            return present or [int(np.argmax(probs))]
        return [int(np.argmax(probs))]
    if isinstance(spec, (list, tuple)):
        out = [class_index(bundle, s) for s in spec]
        if not out:
            raise CellclassError("no target classes given", "name at least one class, or use 'all'")
        return list(dict.fromkeys(out))
    return [class_index(bundle, spec)]


def needs_probs(spec: Target) -> bool:
    return spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "predicted"))
