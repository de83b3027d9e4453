"""A deep copy of a network, as ``copy.deepcopy`` makes it, without its slowest part.

``copy.deepcopy`` of an ``nn.Module`` copies each module's ~11 hook and registry
dictionaries through the generic ``__reduce_ex__`` path, which for ``OrderedDict`` (an
immutable builtin type) recomputes the slot names and fails to cache them every time:
~3000 times for the built-in EfficientNet.  That Python-bound work starves the UI thread
of the GIL while live mode copies the session's model after each label (0.4–0.7 s UI
stalls measured, see docs/measurements/finetune_cache.md).  Here modules are rebuilt
directly: empty dictionaries and sets new, parameters and buffers through their own
``__deepcopy__`` (one ``memo``, so shared tensors stay shared), everything else through
``copy.deepcopy``; a module class with its own copy or pickling hooks is copied by
``copy.deepcopy`` itself.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

from torch import nn

_TENSOR_DICTS = ("_parameters", "_buffers")


def _plain(cls: type) -> bool:
    """Whether ``cls`` copies like ``nn.Module`` (no copy or pickling hooks of its own)."""
    return (getattr(cls, "__deepcopy__", None) is None and cls.__reduce_ex__ is object.__reduce_ex__
            and cls.__reduce__ is object.__reduce__ and cls.__getstate__ is nn.Module.__getstate__)


def _copy(obj: Any, memo: dict[int, Any]) -> Any:
    if id(obj) in memo:
        return memo[id(obj)]
    if not isinstance(obj, nn.Module) or not _plain(type(obj)):
        return copy.deepcopy(obj, memo)
    new = type(obj).__new__(type(obj))  # as copy.deepcopy rebuilds it (copyreg.__newobj__)
    memo[id(obj)] = new
    state: dict[str, Any] = {}
    for key, value in obj.__dict__.items():
        if key == "_compiled_call_impl":  # as nn.Module.__getstate__: a compiled forward is not copied
            continue
        if key == "_modules":
            state[key] = type(value)((n, None if m is None else _copy(m, memo)) for n, m in value.items())
        elif key in _TENSOR_DICTS:
            state[key] = type(value)((n, None if t is None else copy.deepcopy(t, memo)) for n, t in value.items())
        elif type(value) in (OrderedDict, dict, set) and not value:
            state[key] = type(value)()
        else:
            state[key] = copy.deepcopy(value, memo)
    new.__setstate__(state)  # as copy.deepcopy does (modules patch old states there)
    return new


def clone_network(net: nn.Module) -> nn.Module:
    """An independent deep copy of ``net`` (the same result as ``copy.deepcopy(net)``)."""
    return _copy(net, {})


__all__ = ["clone_network"]
