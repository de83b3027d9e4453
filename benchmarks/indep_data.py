"""Image classification data sets built without ``core.synth``: other textures, other
dtypes, other generators — so a benchmark or a test on them checks the training
defaults on data this project's own generator never shaped.

Every data set is separable by texture or shape, never by mean intensity: each
image gets its own random gain and offset (as exposure and camera offset vary
between acquisitions), so a classifier that only reads the brightness is at chance.

``make(name, n, size, seed)`` returns ``(images, labels, classes)``; ``write(...)``
stores them as a class-folder tree of PNG (uint8) or TIFF (uint16, float32) files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur by FFT (periodic edges; fine for textures)."""
    h, w = img.shape[-2:]
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    kernel = np.exp(-2 * (np.pi * sigma) ** 2 * (fy ** 2 + fx ** 2))
    return np.real(np.fft.ifft2(np.fft.fft2(img) * kernel))


def _unit(img: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(img, (0.5, 99.5))
    return np.clip((img - lo) / max(hi - lo, 1e-9), 0.0, 1.0)


def _discs(rng: np.random.Generator, size: int, n: int, radius: tuple[float, float], ring: bool = False,
           aspect: float = 1.0) -> np.ndarray:
    """``n`` filled discs / rings / elongated ellipses at random places and angles, in [0, 1]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.zeros((size, size), np.float32)
    for _ in range(n):
        cy, cx = rng.uniform(0, size, 2)
        r = rng.uniform(*radius)
        th = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = dx * np.cos(th) + dy * np.sin(th)
        v = -dx * np.sin(th) + dy * np.cos(th)
        d = np.sqrt((u / (r * aspect)) ** 2 + (v / r) ** 2)
        shape = np.exp(-((d - 0.8) / 0.15) ** 2) if ring else (d <= 1.0).astype(np.float32)
        out = np.maximum(out, shape)
    return out


# ------------------------------------------------------------------ the four dtype classes
def _rgb8(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """8-bit RGB 'phase contrast': many small round cells / few large round cells / rods."""
    if label == 0:
        fg = _discs(rng, size, 14, (size * 0.04, size * 0.06))
    elif label == 1:
        fg = _discs(rng, size, 3, (size * 0.10, size * 0.14))
    else:
        fg = _discs(rng, size, 6, (size * 0.03, size * 0.04), aspect=3.5)
    halo = _blur(fg, 1.5) - _blur(fg, 4.0)  # the bright halo of phase contrast around each cell
    base = 0.5 + 0.6 * halo - 0.15 * fg + 0.05 * _blur(rng.normal(size=(size, size)), 3.0)
    gain, offset = rng.uniform(0.5, 1.3), rng.uniform(-0.15, 0.15)
    tint = rng.uniform(0.85, 1.15, 3)
    rgb = np.stack([(base - 0.5) * gain * t + 0.5 + offset for t in tint], -1)
    rgb += rng.normal(0, 0.03, rgb.shape)
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def _u12(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """12-bit camera data in uint16 (values ~100-4000): coarse vs fine granular texture."""
    sigma = size * 0.06 if label == 0 else size * 0.015
    tex = _unit(_blur(rng.normal(size=(size, size)), sigma))
    offset, gain = rng.uniform(100, 400), rng.uniform(1200, 3500)
    img = offset + gain * tex + rng.normal(0, 25, tex.shape)
    return np.clip(img, 0, 4095).round().astype(np.uint16)


def _f32(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """3-channel float32 NLO-like, values 0-3e4: lipid droplets in channel 0 sit inside the
    cells of channel 1 (label 1) or anywhere (label 0); channel 2 is a transmission image."""
    cells = _discs(rng, size, 4, (size * 0.12, size * 0.16))
    cell_img = _blur(cells, 2.0)
    drops = np.zeros((size, size), np.float32)
    yy, xx = np.nonzero(cells > 0.5) if label == 1 else np.nonzero(np.ones_like(cells))
    for k in rng.choice(len(yy), size=min(len(yy), 12), replace=False) if len(yy) else []:
        drops[yy[k], xx[k]] = 1.0
    drops = _unit(_blur(drops, 1.2))
    trans = 1.0 - 0.3 * _blur(cells, 4.0) + 0.05 * rng.normal(size=(size, size))
    chans = [drops, cell_img, trans]
    scale = rng.uniform(0.4, 1.0, 3) * np.array([3e4, 2e4, 1e4])
    out = np.stack([c * s for c, s in zip(chans, scale)]) + rng.normal(0, 150, (3, size, size))
    return np.clip(out, 0, None).astype(np.float32)


def _u16(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """Full-range 16-bit greyscale: straight fibres vs curly fibres (both the same density)."""
    img = np.zeros((size, size), np.float32)
    for _ in range(6):
        y, x = rng.uniform(0, size, 2)
        ang = rng.uniform(0, 2 * np.pi)
        for _ in range(int(size * 1.2)):
            ang += rng.normal(0, 0.03 if label == 0 else 0.45)
            y, x = (y + np.sin(ang)) % size, (x + np.cos(ang)) % size
            img[int(y), int(x)] = 1.0
    img = _unit(_blur(img, 1.0)) * 0.8 + 0.2 * _unit(_blur(rng.normal(size=(size, size)), 6.0))
    offset, gain = rng.uniform(0, 8000), rng.uniform(30000, 57000)
    return np.clip(offset + gain * img + rng.normal(0, 300, img.shape), 0, 65535).round().astype(np.uint16)


DATASETS: dict[str, tuple[Callable[[np.random.Generator, int, int], np.ndarray], tuple[str, ...], str]] = {
    "rgb8-cells": (_rgb8, ("small-round", "large-round", "rods"), ".png"),
    "u12-texture": (_u12, ("coarse", "fine"), ".tif"),
    "f32-nlo-3ch": (_f32, ("droplets-anywhere", "droplets-in-cells"), ".tif"),
    "u16-fibres": (_u16, ("straight", "curly"), ".tif"),
}


def make(name: str, n: int, size: int, seed: int) -> tuple[list[np.ndarray], list[int], list[str]]:
    """``n`` images (classes balanced, shuffled) of the data set ``name``."""
    gen, classes, _ = DATASETS[name]
    rng = np.random.default_rng(seed)
    labels = [i % len(classes) for i in range(n)]
    rng.shuffle(labels)
    return [gen(rng, lab, size) for lab in labels], labels, list(classes)


def write(root: Path, name: str, n: int, size: int, seed: int) -> list[str]:
    """Write a class-folder tree under ``root``; returns the class names."""
    import tifffile
    from PIL import Image

    images, labels, classes = make(name, n, size, seed)
    suffix = DATASETS[name][2]
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
    for i, (img, lab) in enumerate(zip(images, labels)):
        path = root / classes[lab] / f"img{i:04d}{suffix}"
        if suffix == ".png":
            Image.fromarray(img).save(path)
        else:  # channel-first for multichannel, with the axes named so no guessing is needed
            tifffile.imwrite(path, img, metadata={"axes": "CYX" if img.ndim == 3 else "YX"})
    return classes
