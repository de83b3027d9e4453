"""Cell layouts: where cells sit, what outline they have, where their nucleus is.

One vectorised construction serves every modality.  Each cell is a star-shaped
body (ellipse, lens-shaped spindle, or anything between, with a few random
harmonics on the outline); cells that would overlap are cut along the bisector
between their centres (nearest-centre Voronoi), which gives touching cells a shared
straight border and dense sheets the polygonal cobblestone look of epithelia.
Everything is computed for the whole image at once with one Euclidean distance
transform, so a few hundred cells cost a few milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from ._noise import sample_in_mask, smooth_field

N_HARM = 3  # outline harmonics 2..4: enough for irregular, few enough to stay cell-like


@dataclass
class CellSpec:
    """Per-cell geometry; lengths in pixels, angles in radians, one entry per cell."""

    cy: np.ndarray
    cx: np.ndarray
    a: np.ndarray          # semi-axis along the cell's long direction
    b: np.ndarray          # semi-axis across it
    angle: np.ndarray
    q: np.ndarray          # outline exponent across the axis: 2 ellipse, 1 pointed spindle
    harm: np.ndarray       # (N, N_HARM) relative amplitudes of outline harmonics
    phase: np.ndarray      # (N, N_HARM)
    nuc_a: np.ndarray      # nucleus semi-axes
    nuc_b: np.ndarray
    nuc_u: np.ndarray      # nucleus offset in the cell frame
    nuc_v: np.ndarray

    @property
    def n(self) -> int:
        return int(self.cy.size)


@dataclass
class CellField:
    """Per-pixel geometry of a layout, all arrays (H, W)."""

    spec: CellSpec
    labels: np.ndarray     # int32, 0 background, k+1 for cell k
    owner: np.ndarray      # int32, index of the nearest cell for every pixel
    rho: np.ndarray        # normalised radius in the owner's frame: <1 inside the cell
    u: np.ndarray          # coordinates in the owner's frame (pixels)
    v: np.ndarray
    nucleus: np.ndarray    # bool
    nrho: np.ndarray       # normalised radius in the owner's nucleus

    @property
    def inside(self) -> np.ndarray:
        return self.labels > 0

    def borders(self) -> np.ndarray:
        """Pixels where two different cells touch (not cell/background edges)."""
        lab = self.labels
        b = np.zeros(lab.shape, bool)
        dy = (lab[1:] != lab[:-1]) & (lab[1:] > 0) & (lab[:-1] > 0)
        dx = (lab[:, 1:] != lab[:, :-1]) & (lab[:, 1:] > 0) & (lab[:, :-1] > 0)
        b[1:] |= dy
        b[:-1] |= dy
        b[:, 1:] |= dx
        b[:, :-1] |= dx
        return b

    def inner_distance(self) -> np.ndarray:
        """Distance (px) from each cell pixel to its cell's edge or to a neighbour."""
        return ndi.distance_transform_edt(self.inside & ~self.borders()).astype(np.float32)

    def outer_distance(self) -> np.ndarray:
        """Distance (px) from each background pixel to the nearest cell."""
        return ndi.distance_transform_edt(~self.inside).astype(np.float32)

    def per_cell(self, values: np.ndarray) -> np.ndarray:
        """Broadcast one value per cell to an image (0 outside cells)."""
        vals = np.concatenate([[0], np.asarray(values, np.float32)])
        return vals[self.labels]


def place_centres(rng: np.random.Generator, shape: tuple[int, int], n: int, min_dist: float,
                  density: np.ndarray | None = None, margin: float = 0.0) -> np.ndarray:
    """Up to ``n`` points (y, x) at least ``min_dist`` apart (dart throwing).

    ``density`` (same shape as the image) biases where points land, e.g. into
    colonies; points may fall up to ``margin`` pixels outside the image so that
    cells are cut by the border as in any real field of view.
    """
    h, w = shape
    m = max(8 * n, 64)
    if density is None:
        ys = rng.uniform(-margin, h + margin, m)
        xs = rng.uniform(-margin, w + margin, m)
    else:
        ys, xs = sample_in_mask(rng, np.ones(shape, bool), m, weight=density)
        # fill the densest places first, so colonies pack tightly from the core out
        yi = np.clip(ys.astype(int), 0, h - 1)
        xi = np.clip(xs.astype(int), 0, w - 1)
        order = np.argsort(-(density[yi, xi] * rng.uniform(0.85, 1.0, m)), kind="stable")
        ys, xs = ys[order], xs[order]
    # greedy dart throwing: accept candidates in order unless an accepted one is
    # closer than min_dist; conflicts come from a k-d tree, so the loop is cheap
    cand = np.stack([ys, xs], 1)
    pairs = cKDTree(cand).query_pairs(min_dist, output_type="ndarray")
    both = np.concatenate([pairs, pairs[:, ::-1]]) if len(pairs) else np.zeros((0, 2), int)
    both = both[np.argsort(both[:, 0], kind="stable")]
    starts = np.searchsorted(both[:, 0], np.arange(m + 1))
    nbrs = both[:, 1]
    blocked = np.zeros(m, bool)
    keep = []
    for i in range(m):
        if blocked[i]:
            continue
        keep.append(i)
        if len(keep) == n:
            break
        blocked[nbrs[starts[i]:starts[i + 1]]] = True
    return cand[keep].reshape(-1, 2)


def colony_density(rng: np.random.Generator, shape: tuple[int, int], n_colonies: int,
                   radius: float, floor: float = 0.0) -> np.ndarray:
    """Sum of round Gaussian blobs: where colony cells are likely to be."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dens = np.full(shape, floor, np.float32)
    for cy, cx in zip(rng.uniform(0, h, n_colonies), rng.uniform(0, w, n_colonies)):
        r = radius * rng.uniform(0.7, 1.3)
        dens += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    return dens


def orientation_field(rng: np.random.Generator, shape: tuple[int, int], pts: np.ndarray,
                      spread: float) -> np.ndarray:
    """Angles at ``pts`` that vary slowly across the image: aligned, streaming cells."""
    base = rng.uniform(0, np.pi)
    field = smooth_field(rng, shape, max(shape) / 2.5) * spread
    yi = np.clip(pts[:, 0].astype(int), 0, shape[0] - 1)
    xi = np.clip(pts[:, 1].astype(int), 0, shape[1] - 1)
    return base + field[yi, xi]


def make_spec(rng: np.random.Generator, pts: np.ndarray, a: np.ndarray, b: np.ndarray,
              angle: np.ndarray, q: float | np.ndarray = 2.0, roughness: float = 0.08,
              nuc_frac: tuple[float, float] = (0.35, 0.5), nuc_shift: float = 0.15) -> CellSpec:
    """Fill in outline harmonics and a nucleus for cells at ``pts``."""
    n = len(pts)
    q = np.broadcast_to(np.asarray(q, float), (n,)).copy()
    harm = rng.uniform(0, roughness, (n, N_HARM)) / np.arange(1, N_HARM + 1)
    frac = rng.uniform(*nuc_frac, n)
    # nuclei are rounder than their cells: cap the nucleus aspect ratio
    nb = b * frac * rng.uniform(0.9, 1.1, n)
    na = np.minimum(a * frac, nb * 1.6)
    return CellSpec(pts[:, 0].copy(), pts[:, 1].copy(), a.astype(float), b.astype(float), angle.astype(float), q,
                    harm, rng.uniform(0, 2 * np.pi, (n, N_HARM)), na, nb,
                    rng.normal(0, nuc_shift, n) * a, rng.normal(0, nuc_shift, n) * b)


def build(shape: tuple[int, int], spec: CellSpec, pad: int = 0) -> CellField:
    """Rasterise ``spec`` into per-pixel geometry (pad lets cells enter from outside)."""
    h, w = shape
    ph, pw = h + 2 * pad, w + 2 * pad
    n = spec.n
    if n == 0:
        z = np.zeros(shape, np.float32)
        return CellField(spec, np.zeros(shape, np.int32), np.zeros(shape, np.int32), z + 9.0, z, z,
                         np.zeros(shape, bool), z + 9.0)
    iy = np.clip(np.round(spec.cy).astype(int) + pad, 0, ph - 1)
    ix = np.clip(np.round(spec.cx).astype(int) + pad, 0, pw - 1)
    ids = np.zeros((ph, pw), np.int32)
    ids[iy, ix] = np.arange(1, n + 1)  # a later cell on the same pixel hides an earlier one
    _, (ny, nx) = ndi.distance_transform_edt(ids == 0, return_indices=True)
    owner = ids[ny, nx][pad:pad + h, pad:pad + w] - 1
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dy = yy - spec.cy[owner].astype(np.float32)
    dx = xx - spec.cx[owner].astype(np.float32)
    ca = np.cos(spec.angle).astype(np.float32)[owner]
    sa = np.sin(spec.angle).astype(np.float32)[owner]
    u = dx * ca + dy * sa
    v = -dx * sa + dy * ca
    a = spec.a.astype(np.float32)[owner]
    b = spec.b.astype(np.float32)[owner]
    theta = np.arctan2(v / b, u / a)
    wobble = np.ones(shape, np.float32)
    for j in range(N_HARM):
        wobble += spec.harm[owner, j].astype(np.float32) * np.cos((j + 2) * theta + spec.phase[owner, j].astype(np.float32))
    d = ((u / a) ** 2 + np.abs(v / b) ** spec.q.astype(np.float32)[owner]) / (wobble * wobble)
    rho = np.sqrt(d)
    inside = rho < 1.0
    labels = np.where(inside, owner + 1, 0).astype(np.int32)
    nu = u - spec.nuc_u.astype(np.float32)[owner]
    nv = v - spec.nuc_v.astype(np.float32)[owner]
    nrho = np.sqrt((nu / spec.nuc_a.astype(np.float32)[owner]) ** 2 + (nv / spec.nuc_b.astype(np.float32)[owner]) ** 2)
    nucleus = inside & (nrho < 1.0)
    return CellField(spec, labels, owner.astype(np.int32), rho.astype(np.float32), u, v, nucleus, nrho.astype(np.float32))


def layout(rng: np.random.Generator, p: dict, shape: tuple[int, int], s: float, coverage: float) -> CellField:
    """A whole field of cells from a parameter dict (see the modality tables).

    Keys: ``a`` (semi-axis range, px at the default size), ``ar`` (aspect range),
    ``q``, ``rough``, ``layout`` (colonies | sheet | aligned | scattered),
    ``n_col`` (colonies), ``spread`` (aligned), ``spacing`` (minimum centre
    distance in units of the short semi-axis), ``nuc`` (nucleus size fraction).
    ``coverage`` (fraction of the field covered) is drawn by the caller from one
    range for every class, so cell density never gives a class away.
    """
    h, w = shape
    pad = int(20 * s)
    a_mean = np.mean(p["a"]) * s
    b_mean = a_mean / np.mean(p["ar"])
    area = np.pi * a_mean * b_mean * (0.85 if p["q"] < 1.5 else 1.0)
    n = max(2, int(round(coverage * (h + pad) * (w + pad) / area)))
    spacing = p["spacing"] * b_mean
    kind = p["layout"]
    if kind in ("colonies", "sheet"):
        n_col = int(rng.integers(p["n_col"][0], p["n_col"][1] + 1))
        radius = np.sqrt(coverage * h * w / (np.pi * n_col)) * (1.1 if kind == "sheet" else 0.9)
        dens = colony_density(rng, shape, n_col, radius, floor=0.02)
        pts = place_centres(rng, shape, n, spacing, density=dens)
    else:
        pts = place_centres(rng, shape, n, spacing, margin=pad * 0.8)
    k = len(pts)
    a = rng.uniform(*p["a"], k) * s
    b = a / rng.uniform(*p["ar"], k)
    if kind == "sheet":
        # cells larger than their spacing: neighbours cut each other into polygons
        a, b = a * 1.15, b * 1.15
    if kind == "aligned":
        angle = orientation_field(rng, shape, pts, p["spread"]) + rng.normal(0, 0.08, k)
    else:
        angle = rng.uniform(0, np.pi, k)
    spec = make_spec(rng, pts, a, b, angle, q=p["q"], roughness=p["rough"], nuc_frac=p["nuc"])
    return build(shape, spec, pad=pad)


def polylines(shape: tuple[int, int], starts: np.ndarray, angles: np.ndarray, lengths: np.ndarray,
              rng: np.random.Generator, wiggle: float = 0.25, n_seg: int = 4,
              taper: bool = True, clip: bool = True) -> np.ndarray:
    """Thin wiggly lines (neurites, filopodia, fibres) as an anti-aliased float map.

    All lines are sampled every ~0.7 px and splatted bilinearly in one go,
    which is much cheaper than rasterising segment by segment.
    """
    starts = np.asarray(starts, float).reshape(-1, 2)
    n = len(starts)
    if n == 0:
        return np.zeros(shape, np.float32)
    angles = np.asarray(angles, float).reshape(n)
    lengths = np.asarray(lengths, float).reshape(n)
    heading = angles[:, None] + np.cumsum(rng.normal(0, wiggle, (n, n_seg)), axis=1)
    seg = (lengths / n_seg)[:, None]
    steps = int(np.ceil(lengths.max() / n_seg / 0.7)) + 1  # ~0.7 px between samples
    t = np.linspace(0, 1, steps, endpoint=False)[None, None, :]
    dy, dx = seg * np.sin(heading), seg * np.cos(heading)
    y0 = starts[:, :1] + np.concatenate([np.zeros((n, 1)), np.cumsum(dy, 1)[:, :-1]], 1)
    x0 = starts[:, 1:] + np.concatenate([np.zeros((n, 1)), np.cumsum(dx, 1)[:, :-1]], 1)
    ys = (y0[..., None] + dy[..., None] * t).ravel()
    xs = (x0[..., None] + dx[..., None] * t).ravel()
    frac = (np.arange(n_seg)[:, None] + t[0]) / n_seg  # position along the line, 0..1
    wt = np.broadcast_to((1.0 - 0.6 * frac) if taper else np.ones_like(frac), (n, n_seg, steps)).ravel()
    # one unit of ink per pixel of length, whatever the sampling step
    wt = wt * np.repeat(np.minimum(1.0, seg[:, 0] / steps), n_seg * steps)
    h, w = shape
    # bilinear splat into a padded canvas via bincount (much faster than np.add.at);
    # samples off the canvas are dropped
    ok = (ys > -1) & (ys < h) & (xs > -1) & (xs < w)
    ys, xs, wt = ys[ok] + 1, xs[ok] + 1, wt[ok]
    y0i, x0i = ys.astype(np.int64), xs.astype(np.int64)
    fy, fx = ys - y0i, xs - x0i
    pw = w + 2
    base = y0i * pw + x0i
    acc = np.zeros((h + 2) * pw)
    for off, ww in ((0, (1 - fy) * (1 - fx)), (pw, fy * (1 - fx)), (1, (1 - fy) * fx), (pw + 1, fy * fx)):
        acc += np.bincount(base + off, wt * ww, minlength=acc.size)[: acc.size]
    img = acc.reshape(h + 2, pw)[1:-1, 1:-1].astype(np.float32)
    # clip: crossings of neurites do not add up; filament meshes (clip=False) do
    return np.minimum(img, 1.0) if clip else img


def axial_fibres(rng: np.random.Generator, cf: CellField, counts: np.ndarray, frac: float,
                 jitter: float) -> np.ndarray:
    """Straight-ish fibres along each cell's long axis (actin stress fibres).

    ``counts[k]`` fibres in cell ``k``, each a chord ``2*frac*a`` long displaced
    across the axis; ``jitter`` is the angular spread around the axis (rad).
    """
    spec = cf.spec
    m = int(np.sum(counts))
    if m == 0:
        return np.zeros(cf.labels.shape, np.float32)
    k = np.repeat(np.arange(spec.n), counts)
    ang = spec.angle[k] + rng.normal(0, jitter, m)
    half = spec.a[k] * frac
    off = rng.uniform(-0.7, 0.7, m) * spec.b[k]
    cy = spec.cy[k] + off * np.cos(spec.angle[k]) - half * np.sin(ang)
    cx = spec.cx[k] - off * np.sin(spec.angle[k]) - half * np.cos(ang)
    return polylines(cf.labels.shape, np.stack([cy, cx], 1), ang, 2 * half, rng, wiggle=0.03, n_seg=2, taper=False)


def boundary_points(spec: CellSpec, k: int, t: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Points (y, x) near the outline of cell ``k`` at frame angles ``t`` (before harmonics)."""
    a, b, ang = spec.a[k] * scale, spec.b[k] * scale, spec.angle[k]
    u = a * np.cos(t)
    v = b * np.sign(np.sin(t)) * np.abs(np.sin(t)) ** (2.0 / spec.q[k])
    y = spec.cy[k] + u * np.sin(ang) + v * np.cos(ang)
    x = spec.cx[k] + u * np.cos(ang) - v * np.sin(ang)
    return np.stack([y, x], axis=-1)
