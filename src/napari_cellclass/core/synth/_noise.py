"""Random fields shared by every modality: smooth noise, band-pass texture, puncta,
illumination and camera noise.

All functions take an explicit ``numpy.random.Generator`` so an image is a pure
function of its seed, and all lengths are in pixels of the final image (callers
scale them with the image size).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
from scipy import ndimage as ndi


def _unit(a: np.ndarray) -> np.ndarray:
    # zero mean, unit std: callers set amplitudes themselves, independent of scale
    a = a - a.mean()
    s = a.std()
    return a / s if s > 0 else a


@lru_cache(maxsize=64)
def _interp_matrix(n: int, scale: float) -> np.ndarray:
    # Gaussian-kernel interpolation from a coarse grid (spacing ``scale``) to n pixels
    m = int(np.ceil(n / scale)) + 4
    pos = (np.arange(n) + 0.5) / scale + 1.5
    wts = np.exp(-0.5 * ((pos[:, None] - np.arange(m)[None, :]) / 0.75) ** 2)
    return (wts / wts.sum(1, keepdims=True)).astype(np.float32)


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Zero-mean, unit-std noise that varies over ``scale`` pixels.

    Coarse white noise interpolated by two small matrix products: far cheaper than
    blurring full-size noise with a wide Gaussian or spline-zooming it.
    """
    h, w = shape
    scale = max(float(scale), 1.0)
    wy, wx = _interp_matrix(h, scale), _interp_matrix(w, scale)
    coarse = rng.standard_normal((wy.shape[1], wx.shape[1])).astype(np.float32)
    # einsum, not @: tiny products through a multi-threaded BLAS spend more time
    # waking threads than computing, badly so on a busy machine
    rows = np.einsum("ij,jk->ik", wy, coarse)
    return _unit(np.einsum("ik,lk->il", rows, wx))


def bandpass(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std texture with features about ``2*sigma`` pixels across."""
    white = rng.standard_normal(shape).astype(np.float32)
    sigma = max(float(sigma), 0.5)
    dog = ndi.gaussian_filter(white, sigma) - ndi.gaussian_filter(white, 2.0 * sigma)
    return _unit(dog)


def ridges(field: np.ndarray, width: float) -> np.ndarray:
    """Thin curvilinear network along the zero level set of a unit-std field.

    Zero crossings of band-limited noise form worm-like, branching curves, which
    is what reticular ER, mitochondrial tubules or vimentin look like at this
    resolution; ``width`` is in units of the field's std.
    """
    return np.exp(-(field / max(width, 1e-3)) ** 2).astype(np.float32)


def puncta(shape: tuple[int, int], ys: np.ndarray, xs: np.ndarray, sigma: float,
           weights: np.ndarray | None = None) -> np.ndarray:
    """Gaussian spots at (ys, xs); a spot of weight 1 peaks at about 1."""
    img = np.zeros(shape, np.float32)
    if len(ys) == 0:
        return img
    yi = np.clip(np.round(ys).astype(int), 0, shape[0] - 1)
    xi = np.clip(np.round(xs).astype(int), 0, shape[1] - 1)
    w = np.ones(len(yi), np.float32) if weights is None else np.asarray(weights, np.float32)
    np.add.at(img, (yi, xi), w)
    sigma = max(float(sigma), 0.4)
    # scale so one isolated spot peaks at ~1 whatever its width
    return ndi.gaussian_filter(img, sigma) * np.float32(2.0 * np.pi * sigma * sigma)


def sample_in_mask(rng: np.random.Generator, mask: np.ndarray, n: int,
                   weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` sub-pixel positions inside ``mask``, optionally weighted by ``weight``."""
    flat = np.flatnonzero(mask)
    if flat.size == 0 or n <= 0:
        return np.zeros(0), np.zeros(0)
    if weight is None:
        idx = flat[rng.integers(0, flat.size, n)]
    else:
        p = np.clip(weight.ravel()[flat].astype(np.float64), 0, None)
        tot = p.sum()
        idx = flat[rng.choice(flat.size, n, p=p / tot)] if tot > 0 else flat[rng.integers(0, flat.size, n)]
    ys, xs = np.divmod(idx, mask.shape[1])
    return ys + rng.uniform(-0.5, 0.5, n), xs + rng.uniform(-0.5, 0.5, n)


def illumination(rng: np.random.Generator, shape: tuple[int, int], strength: float) -> np.ndarray:
    """Multiplicative uneven illumination around 1: tilt, vignetting, slow blotches.

    Drawn from one distribution for every class, so brightness carries no label.
    Tilt and vignette are separable in y and x, so they are built from 1-D ramps.
    """
    h, w = shape
    m = float(max(h, w))
    ys = ((np.arange(h, dtype=np.float32) - h / 2) / m)[:, None]
    xs = ((np.arange(w, dtype=np.float32) - w / 2) / m)[None, :]
    ang = rng.uniform(0, 2 * np.pi)
    cy, cx = rng.uniform(-0.25, 0.25, 2)
    kt, kv = rng.uniform(0.5, 1.5), rng.uniform(0.5, 2.0)
    field = (kt * np.sin(ang) * ys - kv * (ys - cy) ** 2) + (kt * np.cos(ang) * xs - kv * (xs - cx) ** 2)
    field = field + smooth_field(rng, shape, m / 3.0) * 0.15
    field -= field.mean()
    return (1.0 + np.float32(strength / max(float(np.abs(field).max()), 1e-6)) * field).astype(np.float32)


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Optical point-spread blur; a no-op below a quarter pixel."""
    return ndi.gaussian_filter(img, sigma) if sigma >= 0.25 else img


def to_uint(img: np.ndarray, dtype: type) -> np.ndarray:
    """Round and clip a float image into an unsigned integer dtype."""
    info = np.iinfo(dtype)
    return np.clip(np.rint(img), info.min, info.max).astype(dtype)


def match_histogram(img: np.ndarray, ref: np.ndarray, rng: np.random.Generator | None = None,
                    bins: int = 4096) -> np.ndarray:
    """Give ``img`` the intensity distribution of ``ref``, keeping its pixel order.

    A monotone tone curve: every spatial structure (morphology) survives, while the
    global intensity statistics become those of ``ref``.  Each pixel's quantile is
    read off a fine histogram (linear within a bin) rather than a full argsort:
    O(N), and equal values stay equal, so flat regions never turn into ramps.
    ``rng`` is unused and kept so every helper here has the same call shape.
    """
    flat = img.ravel().astype(np.float32)
    lo, hi = float(flat.min()), float(flat.max())
    q = np.sort(ref.ravel().astype(np.float32))
    if hi <= lo:
        return np.full(img.shape, q[q.size // 2], np.float32)
    pos = (flat - np.float32(lo)) * np.float32((bins - 1e-3) / (hi - lo))
    idx = pos.astype(np.int32)
    counts = np.bincount(idx, minlength=bins).astype(np.float32)
    below = np.cumsum(counts) - counts
    quant = (below[idx] + (pos - idx) * counts[idx]) * np.float32(1.0 / flat.size)
    t = np.clip(quant * np.float32(q.size) - 0.5, 0, q.size - 1)
    i = np.minimum(t.astype(np.int32), q.size - 2) if q.size > 1 else np.zeros(t.shape, np.int32)
    f = t - i
    out = q[i] * (1 - f) + q[np.minimum(i + 1, q.size - 1)] * f  # linear between ref quantiles
    return out.astype(np.float32).reshape(img.shape)


def reference_size(size: tuple[int, int]) -> tuple[int, int]:
    """Half-resolution field used to draw a reference histogram cheaply."""
    return max(16, size[0] // 2), max(16, size[1] // 2)


def class_neutral(rng: np.random.Generator, draw: Callable[..., np.ndarray], cls: str, classes: list[str],
                  size: tuple[int, int], style: dict) -> np.ndarray:
    """``draw(rng, cls, size, style)``, with the intensity histogram of a random class.

    Morphology changes the intensity histogram (fibres make a bright tail, flat
    sheets a narrow peak), and a linear model on percentiles reads that shape
    whatever the random gain.  So each image is tone-mapped onto the histogram of
    a half-size reference drawn with the same per-image style but a class chosen
    at random: the global intensity statistics then carry no label at all, while
    every spatial structure is kept.  Channel-first (C, H, W) images are matched
    channel by channel.
    """
    img = draw(rng, cls, size, style)
    ref_cls = classes[int(rng.integers(len(classes)))]
    ref = draw(np.random.default_rng(int(rng.integers(2**63))), ref_cls, reference_size(size), style)
    if img.ndim == 2:
        return match_histogram(img, ref, rng)
    return np.stack([match_histogram(a, b, rng) for a, b in zip(img, ref)])
