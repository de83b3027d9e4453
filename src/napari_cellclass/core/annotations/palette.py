"""Class colours: stable, distinguishable, colour-blind friendly defaults.

The first seven are the Okabe–Ito palette (black left out: it vanishes on dark
microscopy backgrounds).  Further colours step around the hue circle by the golden
angle in OKLCH — a perceptually uniform space — at one lightness and chroma, so
every class stays equally visible.  A class keeps the colour it got when it was
created (the store records a running colour counter), so removing one class never
recolours the others.
"""

from __future__ import annotations

import math
import re

OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")
_GOLDEN_ANGLE = 137.50776405003785
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


def _oklab_to_srgb(L: float, a: float, b: float) -> tuple[float, float, float]:
    # Björn Ottosson's OKLab → linear sRGB matrices, then the sRGB transfer curve
    l_ = (L + 0.3963377774 * a + 0.2158037573 * b) ** 3
    m_ = (L - 0.1055613458 * a - 0.0638541728 * b) ** 3
    s_ = (L - 0.0894841775 * a - 1.2914855480 * b) ** 3
    lin = (
        4.0767416621 * l_ - 3.3077115913 * m_ + 0.2309699292 * s_,
        -1.2684380046 * l_ + 2.6097574011 * m_ - 0.3413193965 * s_,
        -0.0041960863 * l_ - 0.7034186147 * m_ + 1.7076147010 * s_,
    )

    def encode(c: float) -> float:
        c = min(1.0, max(0.0, c))
        return 12.92 * c if c <= 0.0031308 else 1.055 * c ** (1 / 2.4) - 0.055

    return tuple(encode(c) for c in lin)  # type: ignore[return-value]


def default_color(index: int) -> str:
    """The ``index``-th default class colour as ``#RRGGBB`` (the same for ever)."""
    if index < 0:
        raise ValueError(f"colour index must be >= 0, got {index}")
    if index < len(OKABE_ITO):
        return OKABE_ITO[index]
    hue = math.radians((30.0 + _GOLDEN_ANGLE * (index - len(OKABE_ITO))) % 360.0)
    r, g, b = _oklab_to_srgb(0.72, 0.12 * math.cos(hue), 0.12 * math.sin(hue))
    return "#{:02X}{:02X}{:02X}".format(*(round(255 * v) for v in (r, g, b)))


def check_color(color: str) -> str:
    """Validate a ``#RRGGBB`` colour and return it upper-cased."""
    if not isinstance(color, str) or not _HEX.match(color):
        raise ValueError(f"colour {color!r} is not of the form #RRGGBB")
    return color.upper()


def hex_to_rgba(color: str) -> tuple[float, float, float, float]:
    """``#RRGGBB`` → RGBA floats in [0, 1] (what napari colour maps take)."""
    color = check_color(color)
    return (int(color[1:3], 16) / 255, int(color[3:5], 16) / 255, int(color[5:7], 16) / 255, 1.0)
