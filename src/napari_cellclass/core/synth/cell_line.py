"""Phase-contrast cell culture, study 1 (cell-line authentication): RGB uint8.

Eight lines as in Mzurikwao et al. 2020 (four parental lines and their
drug-adapted sublines).  Lines differ only in geometry and texture - cell size,
outline (round, spindle, polygonal, elongated), arrangement (colonies, sheets,
aligned streams, scattered) and cytoplasmic granularity - and every brightness,
contrast, colour and density setting is drawn per image from one distribution
shared by all lines, so no global intensity statistic carries the label.  A
subline resembles its parent with a shift in those traits, as drug adaptation
does.
"""

from __future__ import annotations

import numpy as np

from . import _cells as C
from ._noise import blur, class_neutral, illumination, puncta, to_uint
from ._optics import optical_path, phase_contrast

DEFAULT_SIZE = (240, 320)
PARENTAL = ["COLO-704", "EFO-21", "EFO-27", "UKF-NB-3"]
SUBLINES = ["COLO-704rCDDP1000", "EFO-21rCDDP2000", "EFO-27rCDDP2000", "UKF-NB-3rOXALI4000"]
CLASSES = PARENTAL + SUBLINES

# a, b: semi-axes (px at the default size); q: 2 ellipse .. 1 pointed spindle;
# layout: colonies | sheet | aligned | scattered; spacing: min centre distance / b;
# gran: (texture scale px, amplitude); neurites: (count range, length range px)
_LINES: dict[str, dict] = {
    "COLO-704": dict(a=(9, 12), ar=(1.0, 1.2), q=2.0, rough=0.05, layout="colonies", n_col=(2, 4),
                     spacing=1.8, gran=(0.7, 0.10), dome=0.8, nuc=(0.45, 0.6)),
    "COLO-704rCDDP1000": dict(a=(13, 17), ar=(1.1, 1.5), q=2.0, rough=0.14, layout="colonies", n_col=(4, 8),
                              spacing=1.9, gran=(1.6, 0.30), dome=0.6, nuc=(0.35, 0.5)),
    "EFO-21": dict(a=(14, 18), ar=(1.0, 1.3), q=2.0, rough=0.06, layout="sheet", n_col=(1, 3),
                   spacing=1.5, gran=(0.8, 0.08), dome=0.3, nuc=(0.3, 0.42)),
    "EFO-21rCDDP2000": dict(a=(14, 19), ar=(1.4, 2.0), q=2.0, rough=0.16, layout="sheet", n_col=(3, 6),
                            spacing=1.6, gran=(1.5, 0.28), dome=0.4, nuc=(0.3, 0.42)),
    "EFO-27": dict(a=(24, 34), ar=(3.5, 5.0), q=1.0, rough=0.04, layout="aligned", spread=0.25,
                   spacing=2.2, gran=(0.7, 0.08), dome=0.5, nuc=(0.28, 0.35)),
    "EFO-27rCDDP2000": dict(a=(18, 25), ar=(2.0, 2.8), q=1.3, rough=0.10, layout="aligned", spread=1.2,
                            spacing=2.2, gran=(1.5, 0.28), dome=0.5, nuc=(0.3, 0.4)),
    "UKF-NB-3": dict(a=(9, 12), ar=(2.0, 2.8), q=2.0, rough=0.05, layout="scattered", spacing=3.0,
                     gran=(0.7, 0.08), dome=0.8, nuc=(0.45, 0.55), neurites=((1, 2), (25, 50))),
    "UKF-NB-3rOXALI4000": dict(a=(7, 9), ar=(1.0, 1.3), q=2.0, rough=0.08, layout="colonies", n_col=(3, 6),
                               spacing=2.0, gran=(1.2, 0.25), dome=0.9, nuc=(0.5, 0.6),
                               neurites=((0, 3), (8, 22))),
}


def _neurites(rng: np.random.Generator, cf: C.CellField, p: dict, s: float) -> np.ndarray:
    if "neurites" not in p:
        return np.zeros(cf.labels.shape, np.float32)
    (c0, c1), (l0, l1) = p["neurites"]
    starts, angles, lengths = [], [], []
    spec = cf.spec
    for k in range(spec.n):
        m = int(rng.integers(c0, c1 + 1))
        if m == 0:
            continue
        # bipolar cells grow processes from the two poles of their long axis
        t = (np.arange(m) * np.pi + rng.normal(0, 0.3, m)) if m <= 2 else rng.uniform(0, 2 * np.pi, m)
        pts = C.boundary_points(spec, k, t, scale=0.9)
        starts.append(pts)
        angles.append(spec.angle[k] + t)
        lengths.append(rng.uniform(l0, l1, m) * s)
    if not starts:
        return np.zeros(cf.labels.shape, np.float32)
    return C.polylines(cf.labels.shape, np.concatenate(starts), np.concatenate(angles),
                       np.concatenate(lengths), rng, wiggle=0.2)


def _debris(rng: np.random.Generator, size: tuple[int, int], s: float) -> np.ndarray:
    """Floating rounded cells (phase-bright with a dark rim) and specks of debris.

    Every culture has them, whatever the line, so they are drawn from one
    distribution for all classes: a model must not read them as a label.
    """
    h, w = size
    n_float = rng.poisson(1.5)
    ys, xs = rng.uniform(0, h, n_float), rng.uniform(0, w, n_float)
    r = rng.uniform(5, 8, n_float) * s
    out = np.zeros(size, np.float32)
    for y, x, rr in zip(ys, xs, r):
        y0, y1 = max(0, int(y - 2 * rr)), min(h, int(y + 2 * rr) + 1)
        x0, x1 = max(0, int(x - 2 * rr)), min(w, int(x + 2 * rr) + 1)
        if y1 <= y0 or x1 <= x0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        d = np.sqrt((yy - y) ** 2 + (xx - x) ** 2) / rr
        out[y0:y1, x0:x1] += 0.45 * np.exp(-(d / 0.7) ** 4) - 0.35 * np.exp(-((d - 1.0) / 0.15) ** 2)
    n_speck = rng.poisson(25 * s * s)
    py, px = rng.uniform(0, h, n_speck), rng.uniform(0, w, n_speck)
    out += puncta(size, py, px, 0.7 * s, rng.normal(0, 0.2, n_speck))
    return out


def _style(rng: np.random.Generator) -> dict:
    # everything about optics, exposure and density: drawn alike for every line
    return dict(coverage=rng.uniform(0.22, 0.55), halo=rng.uniform(2.0, 3.5), strength=rng.uniform(0.6, 1.0),
                bg=rng.uniform(105, 165), illum=rng.uniform(0.05, 0.3), noise=rng.uniform(1.5, 5.0))


def _draw(rng: np.random.Generator, cls: str, size: tuple[int, int], st: dict) -> np.ndarray:
    p = _LINES[cls]
    s = float(np.sqrt(size[0] * size[1] / (DEFAULT_SIZE[0] * DEFAULT_SIZE[1])))
    cf = C.layout(rng, p, size, s, coverage=st["coverage"])
    thick = rng.uniform(0.6, 1.4, cf.spec.n)
    gs, ga = p["gran"]
    phi = optical_path(rng, cf, thick, dome=p["dome"], gran_sigma=gs, gran_amp=ga, scale=s)
    phi += 0.45 * _neurites(rng, cf, p, s)
    phi = blur(phi, 0.5 * s)
    rel = phase_contrast(phi, halo_sigma=st["halo"] * s, strength=st["strength"])
    rel += _debris(rng, size, s)
    img = st["bg"] * illumination(rng, size, st["illum"]) * (1.0 + rel)
    return img + rng.normal(0, st["noise"], size).astype(np.float32)


def render(rng: np.random.Generator, cls: str, size: tuple[int, int]) -> np.ndarray:
    """One phase-contrast image of line ``cls``: uint8 (H, W, 3)."""
    grey = class_neutral(rng, _draw, cls, CLASSES, size, _style(rng))
    cast = 1.0 + rng.normal(0, 0.04, 3)  # white balance of the camera
    rgb = grey[..., None] * cast[None, None, :] + rng.normal(0, 1.0, (*size, 3))
    return to_uint(rgb, np.uint8)
