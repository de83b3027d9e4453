"""Confocal actin (phalloidin) images, study 3: RGB uint8 (H, W, 3), signal in green.

MCF-10A (non-cancerous) forms cobblestone sheets whose actin is mostly a cortical
ring under each cell's membrane; MCF-7 grows in tight clusters of smaller cells
with cortical actin plus a few short stress fibres; MDA-MB-231 is mesenchymal -
scattered, elongated cells crossed by long stress fibres along their axis, with a
lamellipodium at the leading edge and filopodia.  Exposure, background, bleed into
red/blue and an optional weak nuclear counterstain vary per image, the same way
for every line.
"""

from __future__ import annotations

import numpy as np

from . import _cells as C
from ._noise import blur, class_neutral, illumination, puncta, sample_in_mask, smooth_field, to_uint

DEFAULT_SIZE = (224, 224)
CLASSES = ["MCF-10A", "MCF-7", "MDA-MB-231"]

# cortex: ring weight; fibres: (count per cell, length as a fraction of the cell,
# angular jitter); lamella: leading-edge band weight; filo: filopodia per cell
_LINES: dict[str, dict] = {
    "MCF-10A": dict(a=(16, 21), ar=(1.0, 1.3), q=2.0, rough=0.08, layout="sheet", n_col=(1, 2), spacing=1.5,
                    nuc=(0.4, 0.5), cortex=1.0, fibres=((0, 2), 0.6, 0.5), lamella=0.0, filo=(0, 1)),
    "MCF-7": dict(a=(11, 14), ar=(1.0, 1.25), q=2.0, rough=0.10, layout="colonies", n_col=(2, 5), spacing=1.7,
                  nuc=(0.45, 0.55), cortex=0.8, fibres=((1, 4), 0.7, 0.35), lamella=0.0, filo=(0, 1)),
    "MDA-MB-231": dict(a=(26, 36), ar=(2.5, 4.0), q=1.3, rough=0.10, layout="scattered", spacing=2.6,
                       nuc=(0.28, 0.36), cortex=0.35, fibres=((5, 10), 1.0, 0.08), lamella=0.8, filo=(3, 8)),
}


def _fibres(rng: np.random.Generator, cf: C.CellField, p: dict) -> np.ndarray:
    (c0, c1), frac, jitter = p["fibres"]
    return C.axial_fibres(rng, cf, rng.integers(c0, c1 + 1, cf.spec.n), frac, jitter) * rng.uniform(0.6, 1.0)


def _filopodia(rng: np.random.Generator, cf: C.CellField, p: dict, s: float) -> np.ndarray:
    spec = cf.spec
    counts = rng.integers(p["filo"][0], p["filo"][1] + 1, spec.n)
    starts, angles = [], []
    for k in np.flatnonzero(counts):
        t = rng.uniform(0, 2 * np.pi, counts[k])
        starts.append(C.boundary_points(spec, k, t, 0.95))
        angles.append(spec.angle[k] + t + rng.normal(0, 0.3, counts[k]))
    if not starts:
        return np.zeros(cf.labels.shape, np.float32)
    starts_a = np.concatenate(starts)
    return C.polylines(cf.labels.shape, starts_a, np.concatenate(angles),
                       rng.uniform(5, 14, len(starts_a)) * s, rng, wiggle=0.15, n_seg=3)


def _style(rng: np.random.Generator) -> dict:
    return dict(coverage=rng.uniform(0.25, 0.55), illum=rng.uniform(0.0, 0.25), top=rng.uniform(140, 255),
                dark=rng.uniform(2, 12), dark_rb=rng.uniform(1, 6, 2), bleed=rng.uniform(0.0, 0.08, 2),
                dapi=rng.uniform(20, 70) * (rng.random() < 0.5))


def _draw(rng: np.random.Generator, cls: str, size: tuple[int, int], st: dict) -> np.ndarray:
    """Float (3, H, W): actin (green), then bleed-through red and blue."""
    p = _LINES[cls]
    s = float(np.sqrt(size[0] * size[1] / (DEFAULT_SIZE[0] * DEFAULT_SIZE[1])))
    cf = C.layout(rng, p, size, s, coverage=st["coverage"])
    inside = cf.inside
    din = cf.inner_distance()
    level = cf.per_cell(rng.uniform(0.6, 1.4, cf.spec.n))  # cell-to-cell staining variation
    cyto = 0.25 * (1.0 + 0.35 * smooth_field(rng, size, 6 * s)) * inside
    cortex = p["cortex"] * np.exp(-din / (1.3 * s)) * inside
    fib = _fibres(rng, cf, p) * inside
    lam = np.zeros(size, np.float32)
    if p["lamella"] > 0:
        # leading edge: the front end of each cell's long axis, a diffuse bright band
        front = (cf.u > 0.55 * cf.spec.a[cf.owner]) & inside
        lam = p["lamella"] * np.exp(-din / (3.0 * s)) * front
    dots_y, dots_x = sample_in_mask(rng, din < 2.5 * s, int(inside.sum() / (60 * s * s)))
    ruffles = 0.5 * puncta(size, dots_y, dots_x, 0.8 * s)  # membrane ruffles and podosomes
    sig = (cyto + cortex + fib + lam) * level + ruffles * inside + 0.8 * _filopodia(rng, cf, p, s)
    sig *= 1.0 - 0.75 * cf.nucleus  # F-actin is largely excluded from the nucleus
    sig = blur(sig, 0.7 * s)
    sig += 0.12 * blur(sig, 6 * s)  # out-of-focus haze
    sig *= illumination(rng, size, st["illum"])
    # exposure / export scaling: top of the signal lands anywhere in the upper range
    green = sig * (st["top"] / max(float(np.percentile(sig, 99.5)), 1e-6))
    green = rng.poisson(np.clip(green, 0, None) * 0.5) * 2.0 + rng.normal(st["dark"], 2.0, size)
    red = green * st["bleed"][0] + rng.normal(st["dark_rb"][0], 1.5, size)
    nuc_stain = blur(cf.nucleus.astype(np.float32), 1.0 * s) * st["dapi"]
    blue = green * st["bleed"][1] + nuc_stain + rng.normal(st["dark_rb"][1], 1.5, size)
    return np.stack([red, green, blue]).astype(np.float32)


def render(rng: np.random.Generator, cls: str, size: tuple[int, int]) -> np.ndarray:
    """One confocal actin image of line ``cls``: uint8 (H, W, 3), actin in green."""
    img = class_neutral(rng, _draw, cls, CLASSES, size, _style(rng))
    return to_uint(np.moveaxis(img, 0, -1), np.uint8)
