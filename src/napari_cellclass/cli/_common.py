"""Argument helpers shared by several sub-commands."""

from __future__ import annotations

import argparse

from ..core.errors import CellclassError


def int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated channel indices like 0,1,2, got {text!r}") from err


def channel_axis(text: str):
    if text in ("auto", "none"):
        return text
    try:
        return int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"channel axis must be an integer, 'auto' or 'none', got {text!r}") from err


def add_input_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, mps (default: auto)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default: 32)")
    p.add_argument("--channels", type=int_list, default=None, metavar="I,J,K",
                   help="which image channels to feed the model, in order (default: automatic)")
    p.add_argument("--channel-axis", type=channel_axis, default="auto", metavar="AXIS",
                   help="axis holding the channels: an integer, 'auto' or 'none' (default: auto)")


def positive(value: int, what: str) -> int:
    if value < 1:
        raise CellclassError(f"{what} must be at least 1, got {value}")
    return value


def check_writable(path: str, option: str) -> None:
    """Fail in a second, not after hours of training: the folder of ``path`` must take a
    new file (read-only folders and the like; a full disk can still only show at the end)."""
    import os
    import tempfile
    from pathlib import Path

    folder = Path(path).absolute().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".cellclass-write-test.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        raise CellclassError(f"cannot write to {folder} ({err.strerror or err})",
                             f"choose a writable folder for {option}; nothing was trained") from err
