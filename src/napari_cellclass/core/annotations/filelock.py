"""Several viewers or processes on one annotation file: a lock and a content check.

Every read-modify-write of an annotation file holds an advisory ``fcntl`` lock on a
sidecar file ``.<name>.lock`` beside it, and compares the file's sha256 with the
content this store last loaded or wrote (compare-and-swap): a file another store
changed meanwhile is never overwritten.  ``stat`` alone is not enough: after our
own ``os.replace`` another process may already have replaced the file again, and
its stat would be recorded as ours.  The lock file itself is never deleted —
deleting a lock file lets two processes lock two different files.

Where ``fcntl`` is missing (Windows) the lock is a no-op; the content check stays.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the exclusive advisory lock of annotation file ``path``."""
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    try:
        fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        # a read-only folder: nobody can write the file there either, so nothing to guard
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def current_sha(path: Path) -> str | None:
    """sha256 of the file now, or None when it does not exist."""
    try:
        return sha256(path.read_bytes())
    except FileNotFoundError:
        return None


def remove_orphan_temporaries(path: Path) -> list[Path]:
    """Delete ``.<name>.*.tmp`` files a killed write left beside ``path``.

    Call with the lock held: every writer holds it while its temporary file exists,
    so any such file seen then belongs to a write that can no longer finish.
    """
    gone = []
    for f in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(OSError):
            f.unlink()
            gone.append(f)
    return gone
