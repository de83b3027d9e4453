"""Issue 18's reliability matrix, model and weights files: every hostile or damaged
file is a :class:`ModelFileError` / :class:`WeightsError` naming the problem, refused
before anything large is allocated; nothing is unpickled.  One case per cell."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from napari_cellclass import build_model, load_model, save_model
from napari_cellclass.core.errors import CellclassError, ModelFileError
from napari_cellclass.core.models import modelfile
from napari_cellclass.core.models.modelfile import META_KEY


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    bundle = build_model("resnet18", classes=["a", "b", "c"], input_size=(32, 32))
    return save_model(bundle, tmp_path_factory.mktemp("m") / "m.safetensors")


def _split(path: Path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def _assemble(header_json: bytes, body: bytes) -> bytes:
    return struct.pack("<Q", len(header_json)) + header_json + body


def _header(change: Callable[[dict], None]) -> Callable[[Path], None]:
    """A writer that edits the safetensors header (tensor entries and __metadata__)."""
    def write(p: Path) -> None:
        header, body = _split(p)
        change(header)
        p.write_bytes(_assemble(json.dumps(header).encode(), body))
    return write


def _meta(change: Callable[[dict], None]) -> Callable[[Path], None]:
    """A writer that edits the napari-cellclass metadata document."""
    def edit(header: dict) -> None:
        meta = json.loads(header["__metadata__"][META_KEY])
        change(meta)
        header["__metadata__"][META_KEY] = json.dumps(meta)
    return _header(edit)


def _raw_meta(text: str) -> Callable[[Path], None]:
    def edit(header: dict) -> None:
        header["__metadata__"][META_KEY] = text
    return _header(edit)


def _first_tensor(header: dict) -> str:
    return next(k for k in header if k != "__metadata__")


def _drop_offsets(header: dict) -> None:
    del header[_first_tensor(header)]["data_offsets"]


def _nested_header(p: Path) -> None:
    _, body = _split(p)
    p.write_bytes(_assemble(b"{" + b'"a":[' * 100_000 + b"]" * 100_000 + b"}", body))


def _nan_weights(p: Path) -> None:
    from safetensors.torch import load_file, save_file

    header, _ = _split(p)
    state = load_file(str(p))
    key = next(k for k, t in state.items() if t.is_floating_point() and t.numel() > 1)
    state[key] = state[key].clone()
    state[key].view(-1)[0] = float("nan")
    save_file(state, str(p), metadata=header["__metadata__"])


def _set(path: tuple[str, ...], value) -> Callable[[dict], None]:
    def change(meta: dict) -> None:
        d = meta
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return change


# name -> (writer that damages a copy of a valid model file, fragment of the message)
FILE_CELLS: dict[str, tuple[Callable[[Path], None], str]] = {
    "header entry without data_offsets": (_header(_drop_offsets), "lacks a dtype, shape or data_offsets"),
    "__metadata__ not an object": (_header(lambda h: h.__setitem__("__metadata__", ["x"])), "__metadata__ is not an object"),
    "metadata JSON not an object": (_raw_meta("[1, 2, 3]"), "metadata is not a JSON object"),
    "format_version not a number": (_meta(_set(("format_version",), "one")), "format_version 'one' is not a number"),
    "deeply nested header": (_nested_header, "corrupt header"),
    "deeply nested metadata": (_raw_meta("[" * 100_000 + "]" * 100_000), "not valid JSON"),
    "in_chans 200000": (_meta(_set(("in_chans",), 200_000)), "impossible sizes: in_chans 200000"),
    "in_chans 1000 (tensors of another shape)": (_meta(_set(("in_chans",), 1000)), "metadata is inconsistent"),
    "head width 10**9": (_meta(_set(("arch", "head", "hidden"), [10**9])), "head widths"),
    "head width 60000 (far more than the tensors hold)": (_meta(_set(("arch", "head", "hidden"), [60_000])), "but the file holds only"),
    "input size 100000x100000": (_meta(_set(("preprocess", "input_size"), [100_000, 100_000])), "input size"),
    "200000 classes": (_meta(_set(("classes",), [f"c{i}" for i in range(200_000)])), "200000 classes"),
    "NaN weights": (_nan_weights, "NaN or infinite"),
    "normalisation std 0": (_meta(_set(("preprocess", "normalization", "std"), [0.0, 1.0, 1.0])), "std must be finite and positive"),
}


@pytest.mark.parametrize("cell", list(FILE_CELLS))
def test_model_file_reliability(cell, model_file, tmp_path, monkeypatch, capsys):
    """Items 10, 11, 13: refused with a message, exit 2 in the CLI, and the real network
    is never built for a file whose sizes are impossible."""
    from napari_cellclass.cli import main

    write, fragment = FILE_CELLS[cell]
    p = tmp_path / "bad.safetensors"
    p.write_bytes(model_file.read_bytes())
    write(p)
    built = []
    real = modelfile.build_network
    monkeypatch.setattr(modelfile, "build_network", lambda *a, **kw: built.append(a) or real(*a, **kw))
    with pytest.raises(ModelFileError, match="") as info:
        load_model(p)
    assert fragment in str(info.value), str(info.value)
    if "sizes" in fragment or "holds only" in fragment or "head widths" in fragment or "input size" in fragment:
        assert not built, "the network was built before the sizes were checked"
    code = main(["info", str(p)])
    err = capsys.readouterr().err
    assert code == 2 and "internal error" not in err and fragment in err, err


def test_a_folder_as_model_is_named_a_folder(tmp_path, capsys):
    """Item 13: a directory passed as a model is not reported as 'does not exist'."""
    from napari_cellclass.cli import main

    with pytest.raises(ModelFileError, match="is a folder"):
        load_model(tmp_path)
    assert main(["info", str(tmp_path)]) == 2 and "is a folder" in capsys.readouterr().err


class _NotATensor:
    pass


def test_weights_error_never_advises_weights_only_false(tmp_path):
    """Item 13: torch's advice to pass weights_only=False is never repeated."""
    from napari_cellclass.core.errors import WeightsError
    from napari_cellclass.core.models.weights import read_state_dict

    p = tmp_path / "w.pth"
    torch.save({"w": torch.zeros(2), "obj": _NotATensor()}, p)
    with pytest.raises(WeightsError) as info:
        read_state_dict(p)
    assert "weights_only" not in str(info.value) and "could run code" in str(info.value)


def _safetensors_full_disk(monkeypatch) -> None:
    import safetensors.torch
    from safetensors import SafetensorError

    def full(model, filename, *a, **kw):
        Path(filename).write_bytes(b"half")
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                              'message: "No space left on device" })')

    monkeypatch.setattr(safetensors.torch, "save_model", full)


def _os_full_disk(monkeypatch) -> None:
    import errno
    import os

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)


@pytest.mark.parametrize("how", ["SafetensorError from safetensors", "OSError ENOSPC from the write"])
def test_full_disk_on_save_keeps_the_old_file(how, model_file, tmp_path, monkeypatch):
    """Item 6: a clear message (no 'internal error'), the previous file byte-identical, no temp file."""
    out = tmp_path / "m.safetensors"
    out.write_bytes(model_file.read_bytes())
    before = out.read_bytes()
    bundle = load_model(model_file)
    (_safetensors_full_disk if how.startswith("Safe") else _os_full_disk)(monkeypatch)
    with pytest.raises(CellclassError, match="No space left on device") as info:
        save_model(bundle, out)
    assert "any previous file there is unchanged" in str(info.value)
    monkeypatch.undo()
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]
