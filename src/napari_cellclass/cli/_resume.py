"""Resuming `cellclass predict --csv`: per (path, frame), not per file.

A run killed inside a 600-plane stack leaves some of its rows; the file counts as
done only when every plane its header declares has a row, and the planes already
written are not written twice.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from ..app.tables import safe_cell


def frames_by_file(rows: Sequence[Sequence[str]]) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for r in rows:
        try:
            out.setdefault(r[0], set()).add(int(r[1]))
        except ValueError:
            continue  # a hand-edited frame cell: that plane is predicted again
    return out


def _n_frames(path: Path, in_chans: int, args: argparse.Namespace) -> int | None:
    from ..core.errors import CellclassError
    from ..core.io.header import read_header
    from ..core.io.images import guess_layout

    try:
        head = read_header(path)
        axis = head.channel_axis if args.channel_axis == "auto" else args.channel_axis
        rgb = head.rgb if args.channel_axis == "auto" else None
        return guess_layout(head.shape, axis, None if args.channels else in_chans, rgb, str(path)).n_frames
    except CellclassError:
        return None  # unknown: predicted again, and its error reported then


def complete_files(files: Sequence[Path], frames: dict[str, set[int]], in_chans: int,
                   args: argparse.Namespace) -> set[str]:
    """CSV names of the files whose every plane already has a row."""
    done = set()
    for f in files:
        have = frames.get(safe_cell(str(f)))
        if not have:
            continue
        n = 1 if have == {0} and _single_plane(f) else _n_frames(f, in_chans, args)
        if n is not None and have >= set(range(n)):
            done.add(safe_cell(str(f)))
    return done


def _single_plane(path: Path) -> bool:
    # PNG/JPEG hold one plane: no header read needed for the common case of a folder of them
    return path.suffix.lower() not in (".tif", ".tiff")
