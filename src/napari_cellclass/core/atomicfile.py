"""Write a file so that a crash at any moment leaves the old or the new file, whole.

The bytes go to a temporary file in the *same* folder (so ``os.replace`` is an
atomic rename on one file system), are flushed and fsync'ed, and only then replace
the target; the folder is fsync'ed afterwards so the rename itself survives a power
cut.  On any failure the temporary file is removed and the target is untouched.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path


# mkstemp creates files readable by the owner only; a published file should get the
# permissions any ordinary file would (or keep those of the file it replaces).
# Read once at import: os.umask can only be read by setting it.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def publish_mode(tmp: str | os.PathLike, target: str | os.PathLike) -> None:
    """Give the temporary file the mode the target has (or would get as a new file)."""
    try:
        mode = os.stat(target).st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~_UMASK
    with contextlib.suppress(OSError):
        os.chmod(tmp, mode)


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make a rename inside ``folder`` durable (no-op where folders cannot be opened)."""
    if os.name == "nt":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on folders; the rename is still atomic
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike, data: bytes, *, durable: bool = True) -> Path:
    """Replace ``path`` by ``data`` atomically; raise the ``OSError`` on failure.

    ``durable=False`` skips the fsyncs (still atomic against a crash of this process,
    not against a power cut); for scratch files only.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        publish_mode(tmp, target)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_folder(target.parent)
    return target


def describe_os_error(err: OSError) -> str:
    """A short reason for a failed write, in words a user knows."""
    import errno

    reasons = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EACCES: "permission denied (read-only folder or file?)",
        errno.EPERM: "operation not permitted",
        errno.EROFS: "the file system is read-only",
        errno.ENOENT: "the folder does not exist",
    }
    return reasons.get(err.errno or -1, f"{err.__class__.__name__}: {err.strerror or err}")


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks (weights files, annotation files)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
