"""The bad inputs of issue 7's robustness matrix, shared by the API/CLI tests and the
widget tests, so every surface is held to the same list."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from skimage.io import imsave

_OK = "ok"


def _png_truncated(p: Path) -> None:
    imsave(p, np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])


# name -> (how to make it: array or a writer(path), expected: "ok" or a message fragment)
IMAGE_CASES = {
    "1x1 image": (lambda: np.zeros((1, 1), np.uint8), "at least 8x8"),
    "all NaN": (lambda: np.full((32, 32), np.nan, np.float32), "every pixel is NaN"),
    "all zero": (lambda: np.zeros((32, 32, 3), np.uint8), _OK),
    "5-D array": (lambda: np.zeros((2, 2, 3, 32, 32), np.uint8), "more dimensions than supported"),
    "16-bit 4000x3000": (lambda: np.random.default_rng(0).integers(0, 65535, (3000, 4000), dtype=np.uint16), _OK),
    "7 channels for a 3-channel model": (lambda: np.zeros((7, 32, 32), np.float32), "7 channels or a stack"),
    "RGBA": (lambda: np.full((32, 32, 4), 200, np.uint8), _OK),
    "negative int32": (lambda: np.full((32, 32), -70000, np.int32), _OK),
    "bool": (lambda: np.eye(32, dtype=bool), _OK),
}
FILE_CASES = {
    "0-byte file": ("empty.png", lambda p: p.write_bytes(b""), "empty"),
    "truncated PNG": ("cut.png", _png_truncated, "cut.png"),
    "text file named .png": ("notes.png", lambda p: p.write_text("hello"), "not a readable PNG"),
    "greyscale JPEG": ("grey.jpg", lambda p: imsave(p, np.full((32, 32), 90, np.uint8)), _OK),
}


MODEL_CASES = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:1000]),
    "pickle renamed .safetensors": lambda p: p.write_bytes(pickle.dumps({"w": [1, 2, 3]}, protocol=4)),
    # same length, so the header stays parseable and only the meaning is wrong
    "wrong metadata": lambda p: p.write_bytes(_replace_once(p.read_bytes(), b'\\"output\\": \\"softmax\\"', b'\\"output\\": \\"xxxxxxx\\"')),
    "tensors of the wrong shape": lambda p: _swap_tensor(p),
}


def _replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1, "test set-up: metadata text not found"
    return data.replace(old, new)


def _swap_tensor(p: Path) -> None:
    import json

    from safetensors.torch import load_file, save_file

    from napari_cellclass.core.models.modelfile import META_KEY

    state = load_file(str(p))
    with open(p, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        meta = json.loads(fh.read(n))["__metadata__"]
    state["head.fc.weight"] = state["head.fc.weight"][:1]
    save_file(state, str(p), metadata={META_KEY: meta[META_KEY]})


# name -> installs the failure for files written into `folder` (monkeypatch, folder).
# Root ignores a read-only mode bit, so both are simulated where the write happens.
def _read_only(monkeypatch, folder: Path) -> None:
    import tempfile

    real = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        where = kwargs.get("dir") or (args[2] if len(args) > 2 else None)
        if where is not None and Path(where).resolve() == folder.resolve():
            raise PermissionError(13, "Permission denied")
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def _disk_full(monkeypatch, folder: Path) -> None:
    import safetensors.torch

    def half_written(model, filename, *args, **kwargs):
        with open(filename, "wb") as fh:
            fh.write(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_model", half_written)


SAVE_FAILURES = {
    "read-only folder": (_read_only, "Permission denied"),
    "disk full": (_disk_full, "No space left on device"),
}
