"""A deterministic fingerprint of a labelled data set, recorded in a model's provenance.

Two runs trained on the same images with the same labels get the same
fingerprint, whatever the order the items came in; one changed pixel, one changed
label or one added image gives a different one.  It hashes the decoded pixels
(shape, dtype and bytes) rather than file sizes or dates, because a re-saved file
with the same size is not the same data; the pixels are the ones the data set
reads for training anyway (its raw cache usually holds them already).
"""

from __future__ import annotations

import hashlib

import numpy as np

from .dataset import Dataset


def image_digest(plane: np.ndarray) -> str:
    """sha256 of an array's shape, dtype and C-ordered bytes."""
    a = np.ascontiguousarray(plane)
    h = hashlib.sha256(f"{a.shape}|{a.dtype.str}|".encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def data_fingerprint(ds: Dataset) -> str:
    """``sha256:<hex>`` over the sorted (name, class names, pixel digest) of every item."""
    classes = ds.classes
    rows = []
    for i, (name, lab) in enumerate(zip(ds.names, ds.labels)):
        plane, _ = ds.raw(i)
        rows.append(f"{name}\t{';'.join(sorted(classes[k] for k in lab))}\t{image_digest(plane)}")
    h = hashlib.sha256()
    for row in sorted(rows):
        h.update(row.encode())
        h.update(b"\n")
    return "sha256:" + h.hexdigest()


__all__ = ["data_fingerprint", "image_digest"]
