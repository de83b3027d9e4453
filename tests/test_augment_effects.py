"""What each affine / intensity augmentation does to an image, not just its shape.

Most tests pin the random draw to one end of its range (``_uniform`` → ±r) so the
transform is known and its effect can be measured exactly; the others check the
unpinned draws spread over both directions.
"""

from __future__ import annotations

import pytest
import torch

from napari_cellclass.core.data import augment as augment_mod
from napari_cellclass.core.data.augment import augment_batch, make_generator
from napari_cellclass.core.data.augment import Augment

S = 32  # image side; small keeps these fast


def _pin(monkeypatch, sign: float) -> None:
    """Every random amplitude draw returns ``sign * r`` (the end of its range)."""
    monkeypatch.setattr(augment_mod, "_uniform",
                        lambda n, r, gen: torch.full((n,), sign * float(r), dtype=torch.float64))


def _square(n=1, lo=12, hi=20):
    x = torch.zeros(n, 1, S, S)
    x[:, :, lo:hi, lo:hi] = 1.0
    return x


def _centroid(img: torch.Tensor) -> tuple[float, float]:
    """(row, col) intensity centroid of a (H, W) image."""
    ys, xs = torch.meshgrid(torch.arange(img.shape[0], dtype=torch.float32),
                            torch.arange(img.shape[1], dtype=torch.float32), indexing="ij")
    m = img.sum()
    return float((ys * img).sum() / m), float((xs * img).sum() / m)


# ------------------------------------------------------------------------------ zoom
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_zoom_scales_the_square_area_by_the_drawn_factor(monkeypatch, sign):
    _pin(monkeypatch, sign)
    x = _square()
    out, _ = augment_batch(x, Augment(zoom=0.3), make_generator(0))
    factor = 1.0 + sign * 0.3  # sampling step: > 1 shows more of the field, so objects shrink (Keras' zoom)
    ratio = float(out.sum() / x.sum())
    assert ratio == pytest.approx(1.0 / factor**2, rel=0.15)
    # the zoom is about the centre: the square stays centred
    cy, cx = _centroid(out[0, 0])
    assert abs(cy - (S - 1) / 2) < 0.5 and abs(cx - (S - 1) / 2) < 0.5


def test_random_zoom_both_enlarges_and_shrinks():
    x = _square(n=48)
    out, _ = augment_batch(x, Augment(zoom=0.3), make_generator(3))
    ratios = out.sum(dim=(1, 2, 3)) / x[0].sum()
    assert ratios.min() < 0.85 and ratios.max() > 1.2
    assert (ratios > 1 / 1.3**2 - 0.1).all() and (ratios < 1 / 0.7**2 + 0.2).all()


# ------------------------------------------------------------------------------ shear
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_shear_slants_a_vertical_edge(monkeypatch, sign):
    _pin(monkeypatch, sign)
    x = torch.zeros(1, 1, S, S)
    x[:, :, 4:28, 14:18] = 1.0  # a tall bar: vertical edges
    out, _ = augment_batch(x, Augment(shear_deg=20), make_generator(0))
    _, top_x = _centroid(out[0, 0, 6:11])
    _, bottom_x = _centroid(out[0, 0, 21:26])
    slant = bottom_x - top_x
    expected = torch.tan(torch.deg2rad(torch.tensor(20.0))).item() * 15  # rows 8 → 23 apart
    assert abs(slant) == pytest.approx(expected, rel=0.25)
    assert float(out.sum() / x.sum()) == pytest.approx(1.0, rel=0.1), "a shear keeps the area"
    # the two ends of the range slant opposite ways
    monkeypatch.setattr(augment_mod, "_uniform",
                        lambda n, r, gen: torch.full((n,), -sign * float(r), dtype=torch.float64))
    other, _ = augment_batch(x, Augment(shear_deg=20), make_generator(0))
    other_slant = _centroid(other[0, 0, 21:26])[1] - _centroid(other[0, 0, 6:11])[1]
    assert other_slant * slant < 0


# ------------------------------------------------------------------------------ shift and fill
def _ramp(n=1):
    """Strictly positive, every column and row distinct, so fill values are recognisable."""
    return (1.0 + torch.arange(S * S, dtype=torch.float32).view(1, 1, S, S) / 10.0).repeat(n, 2, 1, 1)


def test_width_shift_constant_fill_leaves_a_zero_border(monkeypatch):
    _pin(monkeypatch, 1.0)
    x = _ramp()
    out, _ = augment_batch(x, Augment(shift=0.25, width_shift_only=True, fill="constant"), make_generator(0))
    k = S // 4  # a shift of 0.25 of the width is 8 whole pixels
    assert torch.allclose(out[..., : S - k], x[..., k:], atol=1e-3), "content moved by exactly the shift"
    assert torch.allclose(out[..., S - k:], torch.zeros(1), atol=1e-3), "uncovered columns are the fill 0"


def test_width_shift_nearest_fill_repeats_the_edge(monkeypatch):
    _pin(monkeypatch, 1.0)
    x = _ramp()
    out, _ = augment_batch(x, Augment(shift=0.25, width_shift_only=True, fill="nearest"), make_generator(0))
    k = S // 4
    assert torch.allclose(out[..., : S - k], x[..., k:], atol=1e-3)
    edge = x[..., S - 1:].expand(-1, -1, -1, k)
    assert torch.allclose(out[..., S - k:], edge, atol=1e-3), "uncovered columns repeat the last column"


def test_height_shift_only_without_width_shift_only(monkeypatch):
    _pin(monkeypatch, -1.0)
    x = _ramp()
    k = S // 4
    rows_and_cols, _ = augment_batch(x, Augment(shift=0.25, fill="constant"), make_generator(0))
    assert torch.allclose(rows_and_cols[..., k:, k:], x[..., : S - k, : S - k], atol=1e-3)
    assert torch.allclose(rows_and_cols[..., :k, :], torch.zeros(1), atol=1e-3)
    assert torch.allclose(rows_and_cols[..., :, :k], torch.zeros(1), atol=1e-3)
    cols_only, _ = augment_batch(x, Augment(shift=0.25, width_shift_only=True, fill="constant"), make_generator(0))
    assert torch.allclose(cols_only[..., k:], x[..., : S - k], atol=1e-3), "rows stay where they were"


# ------------------------------------------------------------------------------ rotation
def test_small_rotation_moves_corner_pixels_about_the_centre(monkeypatch):
    x = torch.zeros(1, 1, S, S)
    x[:, :, 3:7, 3:7] = 1.0  # a spot near the top-left corner
    c0 = (S - 1) / 2
    y0, x0 = _centroid(x[0, 0])
    r0 = ((y0 - c0) ** 2 + (x0 - c0) ** 2) ** 0.5
    moved = []
    for sign in (1.0, -1.0):
        _pin(monkeypatch, sign)
        out, _ = augment_batch(x, Augment(rotate_deg=10), make_generator(0))
        y1, x1 = _centroid(out[0, 0])
        assert ((y1 - c0) ** 2 + (x1 - c0) ** 2) ** 0.5 == pytest.approx(r0, abs=0.5), "distance to centre kept"
        step = ((y1 - y0) ** 2 + (x1 - x0) ** 2) ** 0.5
        assert step == pytest.approx(r0 * torch.deg2rad(torch.tensor(10.0)).item(), rel=0.2)
        moved.append((y1, x1))
    # the two directions move the spot to different sides
    assert abs(moved[0][0] - moved[1][0]) + abs(moved[0][1] - moved[1][1]) > 4


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_rotation_with_constant_fill_empties_the_corners_only(monkeypatch, sign):
    _pin(monkeypatch, sign)
    x = torch.ones(1, 1, S, S)
    out, _ = augment_batch(x, Augment(rotate_deg=10, fill="constant"), make_generator(1))
    centre = out[:, :, 8:24, 8:24]
    assert torch.allclose(centre, torch.ones_like(centre), atol=1e-5)
    corners = torch.stack([out[0, 0, 0, 0], out[0, 0, 0, -1], out[0, 0, -1, 0], out[0, 0, -1, -1]])
    assert (corners < 0.05).all(), "rotated corners sample outside the image, where the fill is 0"


# ------------------------------------------------------------------------------ intensity
def test_intensity_jitter_scales_each_channel_independently():
    pattern = 1.0 + torch.rand(1, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    x = pattern.repeat(32, 3, 1, 1)  # all three channels identical
    aux = torch.zeros(32, 1, 12, 12)
    aux[:, :, 2:5, 2:5] = 1.0
    out, m = augment_batch(x, Augment(intensity_jitter=0.3), make_generator(4), aux)
    gain = out / x
    per_channel = gain.mean(dim=(2, 3))  # (N, C)
    # each channel is one gain times its input (a scale, not a re-mapping of pixels)
    assert torch.allclose(gain, per_channel[..., None, None].expand_as(gain), atol=1e-5)
    assert (per_channel >= 0.7 - 1e-6).all() and (per_channel <= 1.3 + 1e-6).all()
    # channels that were equal now differ, and the gains spread over the range
    spread = per_channel.max(dim=1).values - per_channel.min(dim=1).values
    assert (spread > 1e-3).float().mean() > 0.9
    assert per_channel.min() < 0.85 and per_channel.max() > 1.15
    assert torch.equal(m, aux), "masks keep their values"
