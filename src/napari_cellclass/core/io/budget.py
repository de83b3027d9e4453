"""The pixel budget: how many pixels one image file may declare before it is decoded.

A 282-byte TIFF can declare 100000 x 100000 pixels and a 1 MB compressed one
30000 x 30000; decoding either takes tens of gigabytes.  Every file's declared size
(its TIFF or PNG/JPEG header) is checked against the budget before a pixel is read,
and a file over it is refused with an :class:`ImageError` naming it — so a folder
still finishes and the report says which file was left out.

``CELLCLASS_MAX_PIXELS`` (environment) sets the budget in values (height x width x
channels x planes); the default 2**28 (268 million, e.g. 16384 x 16384) covers
whole-slide tiles and long stacks while staying a few GB decoded.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from ..errors import ImageError

DEFAULT_MAX_PIXELS = 2**28
ENV = "CELLCLASS_MAX_PIXELS"


def max_pixels() -> int:
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(raw))
    except ValueError:
        raise ImageError(f"{ENV}={raw!r} is not a number", f"set {ENV} to a pixel count such as {DEFAULT_MAX_PIXELS}") from None
    return max(1, value)


def check_pixels(shape: Sequence[int], where: str) -> None:
    """Refuse a declared ``shape`` whose element count is over the budget."""
    n = math.prod(int(s) for s in shape)
    limit = max_pixels()
    if n > limit:
        dims = " x ".join(str(int(s)) for s in shape)
        raise ImageError(f"{where}: declares {dims} = {n:,} pixel values, over the budget of {limit:,}",
                         f"crop or tile it, or raise the budget with the environment variable {ENV}")
