"""Sizes a model file's metadata may ask for, checked before anything is allocated.

A header is a few bytes of JSON, but ``in_chans: 200000`` or a head of width 10⁹
would make the network builder allocate gigabytes before any shape check could
refuse the file.  So the sizes are bounded first, then the network is built on
PyTorch's ``meta`` device (shapes only, no memory) and its parameter count compared
with the tensors the file actually holds: metadata that asks for more parameters
than the file carries (beyond a small margin, which the per-tensor shape check then
reports precisely) is refused without building anything real.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ArchitectureError, ModelFileError

MAX_IN_CHANS = 1024
MAX_CLASSES = 100_000
MAX_HEAD_WIDTH = 65_536
MAX_INPUT_SIDE = 16_384


def _ints(values: Any) -> list[int]:
    return [int(v) for v in values] if isinstance(values, (list, tuple)) else []


def check_sizes(meta: dict[str, Any], where: str) -> None:
    """Refuse channel counts, class counts, head widths and input sizes beyond any real model."""
    problems = []
    in_chans = meta.get("in_chans")
    if isinstance(in_chans, int) and not 1 <= in_chans <= MAX_IN_CHANS:
        problems.append(f"in_chans {in_chans} (1..{MAX_IN_CHANS})")
    classes = meta.get("classes")
    if isinstance(classes, list) and len(classes) > MAX_CLASSES:
        problems.append(f"{len(classes)} classes (at most {MAX_CLASSES})")
    try:
        size = _ints((meta.get("preprocess") or {}).get("input_size"))
        archs = [meta.get("arch") or {}]
        widths: list[int] = []
        while archs:
            a = archs.pop()
            if isinstance(a, dict):
                widths += _ints((a.get("head") or {}).get("hidden"))
                archs += list(a.get("members") or [])
    except (TypeError, ValueError, AttributeError):
        return  # wrong types: the full parser names them
    if any(not 1 <= s <= MAX_INPUT_SIDE for s in size):
        problems.append(f"input size {size} (each side 1..{MAX_INPUT_SIDE})")
    if any(w > MAX_HEAD_WIDTH for w in widths):
        problems.append(f"head widths {widths} (at most {MAX_HEAD_WIDTH})")
    if problems:
        raise ModelFileError(f"{where}: the metadata asks for impossible sizes: " + "; ".join(problems),
                             "the file was altered or is not a napari-cellclass model; re-save the model")


def file_numel(header: dict[str, Any]) -> int:
    """Elements of all tensors a safetensors header lists."""
    total = 0
    for key, entry in header.items():
        if key != "__metadata__":
            n = 1
            for s in entry.get("shape", []):
                n *= int(s)
            total += n
    return total


def check_parameter_count(arch: Any, in_chans: int, n_classes: int, output: str, available: int, where: str) -> None:
    """Build on the meta device; refuse when the network needs more elements than the file holds."""
    from .registry import build_network

    try:
        with torch.device("meta"):
            net = build_network(arch, in_chans, n_classes, output)
    except ArchitectureError:
        return  # reported, with its reason, by the real build
    except Exception:  # noqa: BLE001 - a builder that cannot run on meta: the size bounds still hold
        return
    # a module used twice is saved once: count each tensor object once
    unique = {id(t): t for t in net.state_dict(keep_vars=True).values()}
    need = sum(t.numel() for t in unique.values())
    # small mismatches get the precise per-tensor message of the real load; what must
    # never happen is a build far larger than the file (gigabytes from a few bytes of JSON)
    if need > 2 * available + (1 << 20):
        raise ModelFileError(
            f"{where}: its metadata describes a network of {need:,} values but the file holds only {available:,}",
            "the file was altered or assembled by hand; re-save the model from napari-cellclass",
        )


def check_header_entries(header: dict[str, Any], where: str) -> None:
    """Every tensor entry has a dtype, an integer shape and two integer data offsets;
    ``__metadata__`` (if any) maps strings to strings, as the format requires."""
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ModelFileError(f"{where}: the header's __metadata__ is not an object of strings",
                             "the file is damaged or was assembled by hand; re-save the model")
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        ok = (isinstance(entry, dict) and isinstance(entry.get("dtype"), str)
              and isinstance(entry.get("shape"), list) and all(_is_count(s) for s in entry["shape"])
              and isinstance(entry.get("data_offsets"), list) and len(entry["data_offsets"]) == 2
              and all(_is_count(o) for o in entry["data_offsets"]))
        if not ok:
            raise ModelFileError(f"{where}: the header entry of tensor {key!r} lacks a dtype, shape or data_offsets",
                                 "the file is damaged or was assembled by hand; re-save the model")


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def check_finite(state: dict[str, torch.Tensor], where: str) -> None:
    """Refuse weights holding NaN or infinity: they give ``confidence nan`` silently."""
    bad = [k for k, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise ModelFileError(f"{where}: {len(bad)} tensor(s) hold NaN or infinite values (e.g. {bad[0]})",
                             "the model diverged in training or the file was altered; retrain or use another model")
