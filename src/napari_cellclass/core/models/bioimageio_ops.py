"""Preprocessing in the bioimage.io model spec's terms (0.5), both ways.

Export: a model's :class:`Normalization` as spec operations where the spec states it
*exactly* (linear scalings, per-image zero mean / unit variance); what it cannot state
exactly — this project's order-statistic percentiles, per-image mean subtraction —
stays in the exported network instead (:class:`CellclassPackageNet`), so a consumer
that applies the spec operations gets the probabilities the model gives here.

Import: a package's spec operations as torch functions on (N, C, H, W) tensors, so a
foreign package runs through the same pipeline as the project's own models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..errors import ModelFileError
from ..io.preprocess import Normalization

Op = Callable[[torch.Tensor], torch.Tensor]


def _scale_linear(gain: Sequence[float], offset: Sequence[float]) -> dict[str, Any]:
    return {"id": "scale_linear", "kwargs": {"axis": "channel", "gain": [float(g) for g in gain],
                                             "offset": [float(o) for o in offset]}}


def export_preprocessing(norm: Normalization, in_chans: int, value_range: float) -> tuple[list[dict[str, Any]], Normalization | None]:
    """(spec operations, normalisation left to bake into the network) for one model.

    ``value_range``: what the package's raw input values span for ``meanstd`` (which
    scales by the pixel type's range here): 255 for 8-bit images.
    """
    norm = norm.for_channels(in_chans)
    m = norm.method

    def per_channel(vals: tuple[float, ...] | None, default: float) -> list[float]:
        vals = vals if vals is not None else (default,)
        return [float(v) for v in (vals * in_chans if len(vals) == 1 else vals)]

    mean, std = per_channel(norm.mean, 0.0), per_channel(norm.std, 1.0)
    if m == "none":
        return [], None
    if m == "meanstd":  # (x / range - mean) / std  ==  x * gain + offset
        return [_scale_linear([1.0 / (value_range * s) for s in std], [-mu / s for mu, s in zip(mean, std)])], None
    if m == "dataset" and norm.mean is not None:
        return [_scale_linear([1.0 / s for s in std], [-mu / s for mu, s in zip(mean, std)])], None
    if m == "divide":
        gain = [1.0 / (norm.divisor * s) for s in std]
        return [_scale_linear(gain, [-mu / s for mu, s in zip(mean, std)])], None
    if m == "meansub" and norm.mean is not None:
        return [_scale_linear([1.0] * in_chans, [-mu for mu in mean])], None
    if m in ("image_std", "dataset"):  # per image and channel, population std as here
        return [{"id": "zero_mean_unit_variance", "kwargs": {"axes": ["y", "x"], "eps": 1e-6}}], None
    return [], norm  # percentile, meansub of the image's own means: baked into the network


# ----------------------------------------------------------------------------- import
def _along(vals: Any, axis: str | None, axes: Sequence[str], like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(vals, dtype=torch.float32, device=like.device)
    if axis is None or t.dim() == 0:
        return t
    shape = [1] * like.dim()
    shape[list(axes).index(axis)] = -1
    return t.view(shape)


def _reduce_dims(names: Sequence[str] | None, axes: Sequence[str]) -> list[int]:
    if names is None:
        return list(range(len(axes)))
    unknown = [a for a in names if a not in axes]
    if unknown:
        raise ModelFileError(f"a preprocessing step of the package names unknown axes {unknown}",
                             f"this program runs packages with axes among {list(axes)}")
    return [list(axes).index(a) for a in names]


def _quantile(x: torch.Tensor, q: float, dims: list[int]) -> torch.Tensor:
    keep = [d for d in range(x.dim()) if d not in dims]
    moved = x.permute(*keep, *dims).reshape(*[x.shape[d] for d in keep], -1)
    out = torch.quantile(moved, q / 100.0, dim=-1)
    shape = [1 if d in dims else x.shape[d] for d in range(x.dim())]
    return out.reshape(shape)


def _op(step: dict[str, Any], axes: Sequence[str]) -> Op | None:
    name = step.get("id")
    kw = dict(step.get("kwargs") or {})
    if name == "ensure_dtype":
        return None  # everything runs in float32 here
    if name == "scale_linear":
        ax = kw.get("axis")
        return lambda x: x * _along(kw.get("gain", 1.0), ax, axes, x) + _along(kw.get("offset", 0.0), ax, axes, x)
    if name == "clip":
        lo, hi = kw.get("min"), kw.get("max")
        return lambda x: x.clamp(min=lo, max=hi)
    if name == "fixed_zero_mean_unit_variance":
        ax, eps = kw.get("axis"), float(kw.get("eps", 1e-6))
        return lambda x: (x - _along(kw["mean"], ax, axes, x)) / (_along(kw["std"], ax, axes, x) + eps)
    if name == "zero_mean_unit_variance":
        dims, eps = _reduce_dims(kw.get("axes"), axes), float(kw.get("eps", 1e-6))
        return lambda x: (x - x.mean(dims, keepdim=True)) / (x.std(dims, keepdim=True, unbiased=False) + eps)
    if name == "scale_range":
        if kw.get("reference_tensor"):
            raise ModelFileError("the package scales its input by another tensor's range (reference_tensor)",
                                 "this program runs packages whose input is scaled by its own range")
        dims, eps = _reduce_dims(kw.get("axes"), axes), float(kw.get("eps", 1e-6))
        lo_q, hi_q = float(kw.get("min_percentile", 0.0)), float(kw.get("max_percentile", 100.0))

        def scale_range(x: torch.Tensor) -> torch.Tensor:
            lo, hi = _quantile(x, lo_q, dims), _quantile(x, hi_q, dims)
            return (x - lo) / (hi - lo + eps)
        return scale_range
    if name == "sigmoid":
        return torch.sigmoid
    if name == "softmax":
        dim = list(axes).index(str(kw.get("axis", "channel")))
        return lambda x: x.softmax(dim)
    if name == "binarize":
        thr = kw.get("threshold", 0.5)
        ax = kw.get("axis")
        return lambda x: (x > _along(thr, ax, axes, x)).float()
    raise ModelFileError(f"the package uses the processing step {name!r}, which this program does not implement",
                         "supported: ensure_dtype, scale_linear, clip, fixed_zero_mean_unit_variance, "
                         "zero_mean_unit_variance, scale_range, sigmoid, softmax, binarize")


def compile_ops(steps: Sequence[dict[str, Any]], axes: Sequence[str]) -> list[Op]:
    """Spec operations (as in rdf.yaml) → torch functions on tensors with ``axes``."""
    if not isinstance(steps, (list, tuple)):
        raise ModelFileError("the package's processing steps are not a list", "the rdf.yaml is malformed")
    ops = [_op(dict(s), axes) for s in steps if isinstance(s, dict)]
    return [op for op in ops if op is not None]
