"""Brightfield 400x tiles, study 2 (ScaffoldNet, MDA-MB-468 vs MCF7): uint8 (H, W).

MCF7 grows as tight epithelial islands of smaller cells pressed into polygons
(cobblestone) with a fine, smooth cytoplasm; MDA-MB-468 cells are larger, rounder
and more granular, touch only loosely in grape-like bunches and scatter more.  The source images were split into brightly
and dimly lit sets, so illumination varies widely here too - per image, from one
distribution for both lines - and the focus sign flips the rim polarity at random.
"""

from __future__ import annotations

import numpy as np

from . import _cells as C
from ._noise import blur, class_neutral, illumination, to_uint
from ._optics import brightfield, optical_path

DEFAULT_SIZE = (128, 128)
CLASSES = ["MDA-MB-468", "MCF7"]

_LINES: dict[str, dict] = {
    "MDA-MB-468": dict(a=(15, 19), ar=(1.0, 1.2), q=2.0, rough=0.05, layout="colonies", n_col=(2, 4),
                       spacing=1.85, dome=0.9, nuc=(0.45, 0.55), gran=(1.4, 0.22)),
    "MCF7": dict(a=(8, 11), ar=(1.0, 1.4), q=2.0, rough=0.10, layout="sheet", n_col=(1, 2),
                 spacing=1.45, dome=0.35, nuc=(0.4, 0.5), gran=(0.7, 0.08)),
}


def _style(rng: np.random.Generator) -> dict:
    return dict(coverage=rng.uniform(0.2, 0.6), absorb=rng.uniform(0.05, 0.15),
                # focus slightly above or below the cells: bright or dark rims, any class
                defocus=rng.choice([-1.0, 1.0]) * rng.uniform(0.4, 1.0), sigma=rng.uniform(1.2, 2.0),
                bg=rng.uniform(70, 200),  # "brightly and dimly lit" in the source data
                illum=rng.uniform(0.05, 0.35), noise=rng.uniform(1.0, 4.0))


def _draw(rng: np.random.Generator, cls: str, size: tuple[int, int], st: dict) -> np.ndarray:
    p = _LINES[cls]
    s = float(np.sqrt(size[0] * size[1] / (DEFAULT_SIZE[0] * DEFAULT_SIZE[1])))
    cf = C.layout(rng, p, size, s, coverage=st["coverage"])
    thick = rng.uniform(0.6, 1.4, cf.spec.n)
    gs, ga = p["gran"]
    phi = optical_path(rng, cf, thick, dome=p["dome"], nucleus=0.4, nucleoli=0.4,
                       gran_sigma=gs, gran_amp=ga, scale=s)
    phi = blur(phi, 0.6 * s)
    rel = brightfield(phi, absorb=st["absorb"], defocus=st["defocus"], sigma=st["sigma"] * s)
    img = st["bg"] * illumination(rng, size, st["illum"]) * (1.0 + rel)
    return img + rng.normal(0, st["noise"], size).astype(np.float32)


def render(rng: np.random.Generator, cls: str, size: tuple[int, int]) -> np.ndarray:
    """One brightfield tile of line ``cls``: uint8 (H, W)."""
    return to_uint(class_neutral(rng, _draw, cls, CLASSES, size, _style(rng)), np.uint8)
