"""The OOD statistics (:mod:`core.models.ood`) as tensors of a model file, and their checks.

Two layouts.  The first format (one part: the pooled features) keeps its three
tensors ``means``, ``precision`` and ``threshold`` (threshold, percentile), so older
readers read what they always read.  Several parts store ``threshold`` plus, per part
``i`` (named in the JSON's ``ood.parts``), ``part{i}.means``, ``part{i}.precision`` and
``part{i}.norm`` (the standardisation's location and scale).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from ..errors import ModelFileError
from . import ood_parts

TENSOR_PREFIX = "__ood__."
NO_STATS = "no OOD statistics in this model: retrain or fine-tune to add them"
_FIX = "retrain or fine-tune the model to fit new statistics, or re-save it from napari-cellclass"


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, np.float32))


class Part(NamedTuple):
    """One part's numbers as the file holds them (core.models.ood.PartStats has the same fields)."""

    name: str
    means: np.ndarray
    precision: np.ndarray
    loc: float
    scale: float


class Read(NamedTuple):
    parts: list[Part]
    threshold: float
    percentile: float
    fitted_on: str
    legacy: bool


def to_tensors(parts: list[Any], threshold: float, percentile: float) -> dict[str, torch.Tensor]:
    """What the model file stores: every number, as tensors (``parts``: objects with :class:`Part`'s fields)."""
    out = {TENSOR_PREFIX + "threshold": torch.tensor([threshold, percentile], dtype=torch.float32)}
    if len(parts) == 1 and parts[0].name == ood_parts.POOLED and (parts[0].loc, parts[0].scale) == (0.0, 1.0):
        return {**out, TENSOR_PREFIX + "means": _t(parts[0].means), TENSOR_PREFIX + "precision": _t(parts[0].precision)}
    for i, p in enumerate(parts):
        out[f"{TENSOR_PREFIX}part{i}.means"] = _t(p.means)
        out[f"{TENSOR_PREFIX}part{i}.precision"] = _t(p.precision)
        out[f"{TENSOR_PREFIX}part{i}.norm"] = torch.tensor([p.loc, p.scale], dtype=torch.float32)
    return out


def split_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove and return the OOD tensors from a loaded state (the rest is the network's)."""
    return {k[len(TENSOR_PREFIX):]: state.pop(k) for k in [k for k in state if k.startswith(TENSOR_PREFIX)]}


def _arr(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _part_problems(name: str, means: np.ndarray, prec: np.ndarray, n_classes: int, dim: int | None) -> list[str]:
    d = means.shape[1] if means.ndim == 2 else -1
    problems = []
    if means.ndim != 2 or means.shape[0] != n_classes:
        problems.append(f"class means of shape {tuple(means.shape)}, expected ({n_classes}, D)")
    elif dim is not None and d != dim:
        problems.append(f"class means of {d} features, the network gives {dim} for {name}")
    if prec.shape != (d, d):
        problems.append(f"precision matrix of shape {tuple(prec.shape)}, expected ({d}, {d})")
    return problems


def _expected_dim(name: str, network: nn.Module | None, feature_dim: int | None, in_chans: int | None) -> int | None:
    if name == ood_parts.POOLED:
        return feature_dim
    if name == ood_parts.INPUT:
        return None if in_chans is None else in_chans * ood_parts.N_INPUT_FEATURES
    return None  # a stage's width shows only in a forward pass: PartStats.distance checks it


def _unknown_part(name: str, network: nn.Module | None) -> str | None:
    if name in (ood_parts.INPUT, ood_parts.POOLED):
        return None
    if not name.startswith(ood_parts.STAGE):
        return f"unknown part {name!r}"
    if network is not None:
        try:
            network.get_submodule(name[len(ood_parts.STAGE):])
        except AttributeError:
            return f"part {name!r} names a layer this network does not have"
    return None


def read_tensors(t: dict[str, torch.Tensor], meta: dict[str, Any], feature_dim: int | None,
                 n_classes: int, where: str, network: nn.Module | None = None,
                 in_chans: int | None = None) -> Read | None:
    """Check the statistics a file carries and return their numbers; ``None`` when it carries none."""
    if not t:
        return None
    info = meta.get("ood") if isinstance(meta.get("ood"), dict) else {}
    names = info.get("parts") if any(k.startswith("part") for k in t) else None
    legacy = names is None
    if legacy:
        names = [ood_parts.POOLED]
        want = [("means", "precision")]
    else:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ModelFileError(f"{where}: bad OOD statistics: the JSON names no list of parts", _FIX)
        want = [(f"part{i}.means", f"part{i}.precision", f"part{i}.norm") for i in range(len(names))]
    missing = [k for group in want for k in group if k not in t] + (["threshold"] if "threshold" not in t else [])
    if missing:
        raise ModelFileError(f"{where}: the OOD statistics are incomplete (missing {', '.join(missing)})", _FIX)
    thr = _arr(t["threshold"])
    problems = [] if thr.shape == (2,) else [f"threshold of shape {tuple(thr.shape)}, expected (2,)"]
    parts = []
    for name, group in zip(names, want):
        why = _unknown_part(name, network)
        if why:
            problems.append(why)
            continue
        means, prec = _arr(t[group[0]]), _arr(t[group[1]])
        norm = np.array([0.0, 1.0]) if legacy else _arr(t[group[2]])
        problems += _part_problems(name, means, prec, n_classes, _expected_dim(name, network, feature_dim, in_chans))
        if norm.shape != (2,) or not norm[1] > 0:
            problems.append(f"standardisation of {name} is not a location and a positive scale")
        if not problems and not all(np.isfinite(a).all() for a in (means, prec, thr, norm)):
            problems.append("values that are not finite (NaN or infinity)")
        if not problems:
            parts.append(Part(name, means.astype(np.float32), prec.astype(np.float32), float(norm[0]), float(norm[1])))
    if problems:
        raise ModelFileError(f"{where}: bad OOD statistics: {'; '.join(problems)}", _FIX)
    return Read(parts, float(thr[0]), float(thr[1]), str(info.get("fitted_on", "")), legacy)
