"""Transmitted-light image formation from an optical-path-length map.

Unstained cells are nearly transparent: what a camera sees is their optical path
length ``phi`` (thickness x refractive-index difference) turned into intensity by
the optics.  Phase contrast behaves like a high-pass of ``phi`` (dark cells, bright
halo, shade-off in the middle of flat cells); slightly defocused brightfield
behaves like a weak absorption plus the Laplacian of ``phi`` (dark/bright rims).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ._cells import CellField
from ._noise import bandpass, puncta, sample_in_mask


def optical_path(rng: np.random.Generator, cf: CellField, thickness: np.ndarray, *,
                 dome: float = 0.6, nucleus: float = 0.35, nucleoli: float = 0.5,
                 gran_sigma: float = 1.0, gran_amp: float = 0.15, scale: float = 1.0) -> np.ndarray:
    """Optical path of a layout: domed bodies, nuclei, nucleoli, granular cytoplasm.

    ``thickness`` holds one value per cell; ``dome`` < 1 flattens the profile
    (spread cells), larger values make cells rounder and brighter-haloed.
    """
    inside = cf.inside
    t = cf.per_cell(thickness)
    body = t * np.clip(1.0 - cf.rho ** 2, 0, 1) ** dome
    phi = body + 0.15 * t * inside  # spread cells still have a plateau at their edge
    nuc = cf.nucleus
    phi += nucleus * t * np.sqrt(np.clip(1.0 - cf.nrho ** 2, 0, 1)) * nuc
    # nucleoli: dense, so a high-phase dot or two in each nucleus
    n_dots = max(1, int(nuc.sum() / (40.0 * scale * scale)))
    ys, xs = sample_in_mask(rng, cf.nrho < 0.6, n_dots)
    phi += nucleoli * t.max(initial=0) * puncta(cf.labels.shape, ys, xs, 0.9 * scale) * inside
    if gran_amp > 0:
        phi += gran_amp * t * bandpass(rng, cf.labels.shape, gran_sigma * scale) * (inside & ~nuc)
    return phi.astype(np.float32)


def phase_contrast(phi: np.ndarray, halo_sigma: float, strength: float) -> np.ndarray:
    """Relative intensity change (about 0 on background) of a phase-contrast image."""
    return (-strength * (phi - ndi.gaussian_filter(phi, halo_sigma))).astype(np.float32)


def brightfield(phi: np.ndarray, absorb: float, defocus: float, sigma: float) -> np.ndarray:
    """Relative intensity change of a slightly defocused brightfield image."""
    smooth = ndi.gaussian_filter(phi, sigma)
    return (-absorb * phi + defocus * ndi.laplace(smooth) * sigma * sigma).astype(np.float32)
