"""Non-linear optical (NLO) images, study 4 (senescent vs proliferating): uint16 (3, H, W).

Channels, as in Sorrentino et al. 2023: stimulated Raman scattering at the lipid
CH2 band (``SRS-lipids``), two-photon excited autofluorescence (``TPEF``, NAD(P)H /
flavins / lipofuscin) and ``transmission``.  Senescent cells are enlarged and
flattened with irregular outlines, carry many (and larger) lipid droplets per cell
and a coarse, granular TPEF signal (lipofuscin-like granules); proliferating cells
are small, packed in dense groups with a high nucleus-to-cytoplasm ratio, fine
diffuse TPEF and the odd rounded mitotic cell.  Channel gains and detector
offsets vary per image and per channel, identically for both classes.
"""

from __future__ import annotations

import numpy as np

from . import _cells as C
from ._noise import bandpass, blur, class_neutral, illumination, puncta, sample_in_mask, smooth_field, to_uint
from ._optics import brightfield, optical_path

DEFAULT_SIZE = (250, 300)
CLASSES = ["proliferating", "senescent"]
CHANNELS = ["SRS-lipids", "TPEF", "transmission"]

# droplets: lipid droplets per 100 px^2 of cytoplasm and their radius (px);
# granule: TPEF texture (scale px, weight of granules vs diffuse)
_STATES: dict[str, dict] = {
    "proliferating": dict(a=(10, 14), ar=(1.1, 1.6), q=2.0, rough=0.08, layout="colonies", n_col=(2, 5),
                          spacing=1.7, nuc=(0.5, 0.62), droplets=(0.35, 0.8), granule=(0.7, 0.25), mitotic=0.06),
    "senescent": dict(a=(34, 52), ar=(1.1, 1.8), q=2.0, rough=0.25, layout="scattered", spacing=1.4,
                      nuc=(0.25, 0.34), droplets=(0.5, 1.4), granule=(1.6, 0.8), mitotic=0.0),
}


def _style(rng: np.random.Generator) -> dict:
    return dict(coverage=rng.uniform(0.25, 0.6), illum=rng.uniform(0.05, 0.3, 3),
                gain=rng.uniform(3000, 20000, 2), bg=rng.uniform(0.02, 0.1, 2),  # non-resonant background
                offset=rng.uniform(100, 600, 2), shot=rng.uniform(2, 6, 2),
                absorb=rng.uniform(0.03, 0.08), defocus=rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 0.7),
                trans_gain=rng.uniform(15000, 45000), trans_noise=rng.uniform(100, 400))


def _draw(rng: np.random.Generator, cls: str, size: tuple[int, int], st: dict) -> np.ndarray:
    """Float (3, H, W) in detector counts: SRS-lipids, TPEF, transmission."""
    p = _STATES[cls]
    s = float(np.sqrt(size[0] * size[1] / (DEFAULT_SIZE[0] * DEFAULT_SIZE[1])))
    cf = C.layout(rng, p, size, s, coverage=st["coverage"])
    inside, nuc = cf.inside, cf.nucleus
    cyto = inside & ~nuc
    n = cf.spec.n
    mitotic = cf.per_cell(rng.random(n) < p["mitotic"]) > 0  # rounded, dense, no nucleus visible
    level = cf.per_cell(rng.uniform(0.7, 1.3, n))
    body = np.clip(1.0 - cf.rho ** 2, 0, 1) ** 0.3 * inside

    # SRS lipids: membranes and cytoplasm moderate, nucleus dim, droplets bright
    n_drop = rng.poisson(p["droplets"][0] * cyto.sum() / (100.0 * s * s))
    dy, dx = sample_in_mask(rng, cyto & (cf.rho < 0.9), n_drop)
    drops = puncta(size, dy, dx, p["droplets"][1] * s * rng.uniform(0.8, 1.2), rng.uniform(0.5, 1.0, n_drop))
    srs = (0.35 * body * (1 - 0.5 * nuc) + 0.15 * smooth_field(rng, size, 5 * s) * body) * level
    srs += 1.2 * drops + 0.3 * mitotic * body

    # TPEF: cytoplasmic autofluorescence, granular where lipofuscin accumulates
    gs, gw = p["granule"]
    gran = np.clip(bandpass(rng, size, gs * s), 0, None)
    tpef = (0.4 + gw * gran) * body * (1 - 0.7 * nuc) * level + 0.2 * mitotic * body

    # transmission: weak brightfield contrast from the same cells
    phi = optical_path(rng, cf, rng.uniform(0.6, 1.4, n), dome=0.5, nucleus=0.3, nucleoli=0.4,
                       gran_sigma=0.8, gran_amp=0.1, scale=s)
    trans = 1.0 + brightfield(blur(phi, 0.7 * s), absorb=st["absorb"], defocus=st["defocus"], sigma=1.5 * s)

    out = []
    for ch, img in enumerate((srs, tpef, trans)):
        img = blur(img.astype(np.float32), 0.8 * s) * illumination(rng, size, st["illum"][ch])
        if ch < 2:
            img = st["gain"][ch] * (img + st["bg"][ch]) + st["offset"][ch]
            img += rng.normal(0, 1, size) * np.sqrt(np.clip(img, 1, None)) * st["shot"][ch]
        else:
            img = img * st["trans_gain"] + rng.normal(0, 1, size) * st["trans_noise"]
        out.append(img)
    return np.stack(out).astype(np.float32)


def render(rng: np.random.Generator, cls: str, size: tuple[int, int]) -> np.ndarray:
    """One NLO image of state ``cls``: uint16 (3, H, W) = SRS-lipids, TPEF, transmission."""
    return to_uint(class_neutral(rng, _draw, cls, CLASSES, size, _style(rng)), np.uint16)
