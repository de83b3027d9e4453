"""resolve_device without a GPU: the 'auto' order, and errors that say what to use instead."""

from __future__ import annotations

import pytest
import torch

from napari_cellclass.core.device import resolve_device
from napari_cellclass.core.errors import CellclassError


def _simulate(monkeypatch, cuda: bool, mps: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize("cuda, mps, expected", [
    (False, False, "cpu"), (True, False, "cuda"), (False, True, "mps"), (True, True, "cuda"),
])
def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    _simulate(monkeypatch, cuda, mps)
    assert resolve_device("auto") == torch.device(expected)
    assert resolve_device(None) == torch.device(expected)
    assert resolve_device("AUTO") == torch.device(expected)


def test_cpu_and_device_objects_pass_through(monkeypatch):
    _simulate(monkeypatch, False, False)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("CPU") == torch.device("cpu")
    dev = torch.device("cpu")
    assert resolve_device(dev) is dev


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "mps"])
def test_an_absent_accelerator_is_an_error_naming_the_fix(monkeypatch, name):
    _simulate(monkeypatch, False, False)
    with pytest.raises(CellclassError) as info:
        resolve_device(name)
    msg = str(info.value)
    assert name.split(":")[0] in msg and "'auto'" in msg and "'cpu'" in msg


def test_explicit_cuda_is_accepted_when_available(monkeypatch):
    _simulate(monkeypatch, True, False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(CellclassError, match=r"'cuda:99'.*2 CUDA GPU\(s\)"):  # issue 18: not reported as 'cuda'
        resolve_device("cuda:99")


@pytest.mark.parametrize("name", ["tpu", "gpu", "cuda:x", "meta", "xla"])
def test_unknown_device_names_are_explained(monkeypatch, name):
    _simulate(monkeypatch, True, True)
    with pytest.raises(CellclassError, match="unknown device") as info:
        resolve_device(name)
    assert all(d in str(info.value) for d in ("auto", "cpu", "cuda", "mps"))
