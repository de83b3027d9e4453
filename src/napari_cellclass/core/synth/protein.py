"""Protein subcellular localisation, study 5 (HPA-like): uint8 (4, H, W) + masks.

Channels ``protein``, ``nucleus``, ``microtubules``, ``ER`` as in Liimatainen et
al. 2021.  Every image holds several touching cells; the three reference channels
are drawn for every cell, the protein only in a random subset of cells (with
cell-to-cell expression differences), in the pattern of each of the 1-4
compartments present.  The 13 compartments each have their own look: nucleus fill,
nucleolar dots, nuclear rim, diffuse cytosol, a tubular mitochondrial network,
reticular perinuclear ER, a compact Golgi ribbon beside the nucleus, cytoplasmic
puncta (vesicles), one or two centrosome dots, radial microtubules, wavy
perinuclear intermediate filaments, actin stress fibres with a cortex, and a thin
plasma-membrane ring.  ``render`` also returns, per class, a mask of where that
class's protein signal is (all False for absent classes).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import _cells as C
from ._noise import bandpass, blur, illumination, puncta, ridges, sample_in_mask, smooth_field, to_uint

DEFAULT_SIZE = (256, 256)
CHANNELS = ["protein", "nucleus", "microtubules", "ER"]
CLASSES = ["actin filaments", "centrosome", "cytosol", "ER", "Golgi", "intermediate filaments",
           "microtubules", "mitochondria", "nuclear membrane", "nucleoli", "nucleus",
           "plasma membrane", "vesicles"]
_N_LABEL_P = np.array([0.4, 0.3, 0.2, 0.1])  # 1, 2, 3, 4 compartments per image
_MASK_LEVEL = 0.25  # fraction of a pattern's peak that counts as "protein here"
_LAYOUT = dict(a=(30, 40), ar=(1.1, 1.6), q=2.0, rough=0.16, layout="scattered", spacing=1.5, nuc=(0.36, 0.46))


def draw_labels(rng: np.random.Generator, i: int, k: int) -> list[int]:
    """Sorted class indices of image ``i``: class ``i % k`` first (balance), 1-4 in all."""
    primary = i % k
    m = min(int(rng.choice(4, p=_N_LABEL_P)) + 1, k)
    others = rng.permutation([j for j in range(k) if j != primary])[: m - 1]
    return sorted([primary, *(int(j) for j in others)])


class _Cell:
    """Per-image geometry shared by the reference channels and the protein patterns."""

    def __init__(self, rng: np.random.Generator, size: tuple[int, int], s: float) -> None:
        self.size, self.s = size, s
        self.cf = C.layout(rng, _LAYOUT, size, s, coverage=rng.uniform(0.4, 0.65))
        cf = self.cf
        self.inside, self.nuc = cf.inside, cf.nucleus
        self.cyto = self.inside & ~self.nuc
        self.din = cf.inner_distance()
        sp = cf.spec
        # microtubule-organising centre: just outside the nucleus, on a random side
        side = rng.uniform(0, 2 * np.pi, sp.n)
        cu = sp.nuc_u + 1.25 * sp.nuc_a * np.cos(side)
        cv = sp.nuc_v + 1.25 * sp.nuc_b * np.sin(side)
        ca, sa = np.cos(sp.angle), np.sin(sp.angle)
        self.mtoc = np.stack([sp.cy + cu * sa + cv * ca, sp.cx + cu * ca - cv * sa], 1)
        self.side = side
        # nucleoli: 1-4 per nucleus; dark in the DNA stain, where nucleolar proteins sit
        ny, nx = [], []
        for k in range(sp.n):
            m = int(rng.integers(1, 5))
            r = rng.uniform(0, 0.6, m)
            t = rng.uniform(0, 2 * np.pi, m)
            u = sp.nuc_u[k] + r * sp.nuc_a[k] * np.cos(t)
            v = sp.nuc_v[k] + r * sp.nuc_b[k] * np.sin(t)
            ny.append(sp.cy[k] + u * sa[k] + v * ca[k])
            nx.append(sp.cx[k] + u * ca[k] - v * sa[k])
        self.nucleoli = puncta(size, np.concatenate(ny), np.concatenate(nx), 2.2 * s) * self.nuc
        self.perinuclear = np.exp(-np.clip(cf.nrho - 1.0, 0, None) / 0.9) * self.inside
        self.er = self._er(rng)
        self.mt = self._microtubules(rng)

    def _er(self, rng: np.random.Generator) -> np.ndarray:
        net = ridges(bandpass(rng, self.size, 1.6 * self.s), 0.35)
        rim = np.exp(-(((self.cf.nrho - 1.0) * self.cf.spec.nuc_a.mean()) / (1.5 * self.s)) ** 2)
        return ((0.7 * net + 0.3) * self.perinuclear * self.cyto + 0.35 * rim * self.inside).astype(np.float32)

    def _microtubules(self, rng: np.random.Generator) -> np.ndarray:
        sp = self.cf.spec
        counts = rng.integers(80, 120, sp.n)
        k = np.repeat(np.arange(sp.n), counts)
        t = rng.uniform(0, 2 * np.pi, k.size)
        ends = np.concatenate([C.boundary_points(sp, j, t[k == j], 0.97) for j in range(sp.n)])
        # an aster around the centrosome plus non-centrosomal tubules: not one perfect star
        starts = self.mtoc[k] + rng.normal(0, 1, (k.size, 2)) * (0.25 * sp.b[k])[:, None]
        d = ends - starts
        lines = C.polylines(self.size, starts, np.arctan2(d[:, 0], d[:, 1]), np.hypot(d[:, 0], d[:, 1]),
                            rng, wiggle=0.22, n_seg=8, taper=False, clip=False)
        return (0.5 * np.minimum(lines, 3.0) + 0.2) * self.inside * (1 - 0.6 * self.nuc)

    # --- protein patterns: each returns a float map, peak about 1, zero outside cells

    def pattern(self, name: str, rng: np.random.Generator) -> np.ndarray:
        return _PATTERNS[name](self, rng)

    def _nucleus(self, rng):
        return (0.8 + 0.2 * bandpass(rng, self.size, 1.0 * self.s)) * self.nuc * (1 - 0.6 * np.clip(self.nucleoli, 0, 1))

    def _nucleoli(self, rng):
        return np.clip(self.nucleoli, 0, 1)

    def _nuclear_membrane(self, rng):
        r = (self.cf.nrho - 1.0) * self.cf.spec.nuc_a[self.cf.owner]
        return np.exp(-(r / (1.2 * self.s)) ** 2) * self.inside

    def _cytosol(self, rng):
        return (0.85 + 0.15 * smooth_field(rng, self.size, 8 * self.s)) * self.cyto

    def _mitochondria(self, rng):
        tubes = ridges(bandpass(rng, self.size, 1.5 * self.s), 0.25)
        broken = smooth_field(rng, self.size, 5 * self.s) > -0.6  # partly fragmented, not one mesh
        return tubes * broken * self.cyto * (0.4 + 0.6 * self.perinuclear)

    def _er_pattern(self, rng):
        return self.er / max(float(self.er.max()), 1e-6)

    def _golgi(self, rng):
        sp, k = self.cf.spec, self.cf.spec.n
        m = rng.integers(6, 12, k)
        idx = np.repeat(np.arange(k), m)
        # a ribbon hugging the nucleus on the centrosome side
        t = self.side[idx] + rng.normal(0, 0.35, idx.size)
        rr = rng.uniform(1.1, 1.35, idx.size)
        u = sp.nuc_u[idx] + rr * sp.nuc_a[idx] * np.cos(t)
        v = sp.nuc_v[idx] + rr * sp.nuc_b[idx] * np.sin(t)
        ang = sp.angle[idx]
        y = sp.cy[idx] + u * np.sin(ang) + v * np.cos(ang)
        x = sp.cx[idx] + u * np.cos(ang) - v * np.sin(ang)
        return np.clip(puncta(self.size, y, x, 1.6 * self.s, rng.uniform(0.5, 1.0, idx.size)), 0, 1) * self.cyto

    def _vesicles(self, rng):
        n = int(self.cyto.sum() / (45 * self.s * self.s))
        y, x = sample_in_mask(rng, self.cyto & (self.din > 1.5 * self.s), n)
        return np.clip(puncta(self.size, y, x, 0.9 * self.s, rng.uniform(0.5, 1.0, n)), 0, 1) * self.inside

    def _centrosome(self, rng):
        y, x = self.mtoc[:, 0], self.mtoc[:, 1]
        pair = rng.normal(0, 1.5 * self.s, (len(y), 2))  # the two centrioles, a little apart
        return np.clip(puncta(self.size, np.r_[y, y + pair[:, 0]], np.r_[x, x + pair[:, 1]], 1.3 * self.s), 0, 1) * self.inside

    def _microtubules_pattern(self, rng):
        return np.clip(self.mt, 0, 1)

    def _intermediate(self, rng):
        sp = self.cf.spec
        counts = rng.integers(25, 40, sp.n)
        k = np.repeat(np.arange(sp.n), counts)
        t = rng.uniform(0, 2 * np.pi, k.size)
        starts = np.concatenate([C.boundary_points(sp, j, t[k == j], 0.0) for j in range(sp.n)])
        # start on the nuclear rim and curl around it: a perinuclear cage of wavy fibres
        starts = 0.5 * starts + 0.5 * np.concatenate(
            [C.boundary_points(sp, j, t[k == j], 0.5) for j in range(sp.n)])
        heading = sp.angle[k] + t + np.pi / 2 + rng.normal(0, 0.6, k.size)
        lines = C.polylines(self.size, starts, heading, sp.a[k] * rng.uniform(0.8, 1.6, k.size), rng,
                            wiggle=0.35, n_seg=8, taper=True, clip=False)
        return np.minimum(0.6 * lines, 1.0) * self.inside * (1 - 0.5 * self.nuc)

    def _actin(self, rng):
        fib = C.axial_fibres(rng, self.cf, rng.integers(4, 9, self.cf.spec.n), 0.9, 0.12)
        cortex = 0.7 * np.exp(-self.din / (1.5 * self.s))
        return np.clip(fib + cortex, 0, 1) * self.inside * (1 - 0.8 * self.nuc)

    def _plasma_membrane(self, rng):
        return np.exp(-self.din / (1.0 * self.s)) * self.inside


_PATTERNS: dict[str, Callable[[_Cell, np.random.Generator], np.ndarray]] = {
    "actin filaments": _Cell._actin, "centrosome": _Cell._centrosome, "cytosol": _Cell._cytosol,
    "ER": _Cell._er_pattern, "Golgi": _Cell._golgi, "intermediate filaments": _Cell._intermediate,
    "microtubules": _Cell._microtubules_pattern, "mitochondria": _Cell._mitochondria,
    "nuclear membrane": _Cell._nuclear_membrane, "nucleoli": _Cell._nucleoli, "nucleus": _Cell._nucleus,
    "plasma membrane": _Cell._plasma_membrane, "vesicles": _Cell._vesicles,
}


def _expressing(rng: np.random.Generator, g: _Cell) -> np.ndarray:
    """Per-cell expression level (0 = not expressing); at least one well-visible cell."""
    cf = g.cf
    areas = np.bincount(cf.labels.ravel(), minlength=cf.spec.n + 1)[1:]
    visible = np.flatnonzero(areas > 0.3 * np.pi * cf.spec.a * cf.spec.b)
    if visible.size == 0:
        visible = np.array([int(np.argmax(areas))])
    frac = rng.uniform(0.3, 1.0)
    on = rng.random(cf.spec.n) < frac
    on[rng.choice(visible)] = True
    return on * rng.uniform(0.5, 1.0, cf.spec.n)


def _to_u8(rng: np.random.Generator, img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    # HPA-style 8-bit export: the brightest structures land high in the range.  Scale
    # by the peak, not a percentile: a centrosome dot covers far less than 1 % of the
    # image, and a percentile would blow the faint background staining up to white
    img = img * illumination(rng, size, rng.uniform(0.0, 0.2))
    gain = rng.uniform(170, 255) / max(float(img.max()), 1e-6)
    img = img * gain + rng.uniform(0, 8)
    img = img + rng.normal(0, 1, size) * (1.0 + 0.15 * np.sqrt(np.clip(img, 0, None)))
    return to_uint(img, np.uint8)


def render(rng: np.random.Generator, present: list[str], size: tuple[int, int],
           classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """One 4-channel image with protein in ``present`` compartments.

    Returns ``(image uint8 (4, H, W), masks bool (len(classes), H, W))``.
    """
    s = float(np.sqrt(size[0] * size[1] / (DEFAULT_SIZE[0] * DEFAULT_SIZE[1])))
    g = _Cell(rng, size, s)
    cf = g.cf
    level = cf.per_cell(rng.uniform(0.6, 1.3, cf.spec.n))
    dna = (0.8 + 0.25 * bandpass(rng, size, 1.0 * s)) * g.nuc * (1 - 0.7 * np.clip(g.nucleoli, 0, 1)) * level
    expr_cell = _expressing(rng, g)
    expr = cf.per_cell(expr_cell)
    protein = np.zeros(size, np.float32)
    masks = np.zeros((len(classes), *size), bool)
    for name in present:
        pat = g.pattern(name, rng)
        pat = pat / max(float(pat.max()), 1e-6)
        protein += rng.uniform(0.6, 1.0) * pat * expr
        masks[classes.index(name)] = (pat > _MASK_LEVEL) & (expr > 0)
    protein += 0.03 * g.inside  # faint non-specific staining in every cell
    chans = [protein, dna, g.mt * cf.per_cell(rng.uniform(0.7, 1.2, cf.spec.n)), g.er * level]
    out = np.stack([_to_u8(rng, blur(c.astype(np.float32), 0.7 * s), size) for c in chans])
    return out, masks
