"""'What to label next' over tiles leaves empty background out before ranking: the
blank tiles a model is most unsure about are not worth a label.  The images here are
drawn with numpy (discs on a flat, noisy background), independently of core.synth."""

from __future__ import annotations

import numpy as np
import pytest


def sparse_plane(size=128, tile=32, seed=0):
    """Textured discs in the left half, flat background with sensor noise in the right."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    img = 20 + rng.normal(0, 1.5, (size, size))
    for _ in range(14):
        cy, cx, r = rng.uniform(6, size - 6), rng.uniform(6, size // 2 - 6), rng.uniform(5, 9)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        img[disc] += 120 + rng.normal(0, 25, disc.sum())
    return np.clip(img, 0, 255).astype(np.uint8)


def _tiles(img, tile):
    return [img[y:y + tile, x:x + tile] for y in range(0, img.shape[0], tile) for x in range(0, img.shape[1], tile)]


def test_blank_tiles_are_background_and_alike_tiles_are_kept():
    from napari_cellclass.core.annotations.background import background_tiles

    img = sparse_plane()
    flags = np.array(background_tiles([t[None] for t in _tiles(img, 32)])).reshape(4, 4)
    assert flags[:, 2:].all() and not flags[:, :2].any()
    rng = np.random.default_rng(1)
    assert not any(background_tiles([rng.normal(100, 20, (1, 32, 32)) for _ in range(9)]))  # all textured
    assert not any(background_tiles([np.full((1, 32, 32), 7.0) for _ in range(9)]))  # all blank: nothing to prefer
    assert background_tiles([img[None]]) == [False]


@pytest.mark.gui
def test_rank_job_over_tiles_skips_empty_background(qtbot, tiny_model_file):
    from napari_cellclass.app.finetune_jobs import rank_job
    from napari_cellclass.app.jobs import Request
    from napari_cellclass.app.layer_data import LayerSource, SourceInfo
    from napari_cellclass.app.session import ModelChoice, Session

    img = sparse_plane()
    session = Session()
    session.device = "cpu"
    session.set_choice(ModelChoice("file", str(tiny_model_file)))
    req = Request(LayerSource(img, "sparse", False), SourceInfo("sparse", img.shape, False, (1.0, 1.0), (0.0, 0.0)))
    gen = rank_job(session, [req], {}, "margin", tile=32)
    while True:
        try:
            next(gen)
        except StopIteration as done:
            ranking = done.value
            break
    assert ranking.background == 8 and len(ranking.keys) == 8
    assert all(box[1] < 64 for _, _, box in ranking.keys)  # only the tiles with cells, left half
    # labelled tiles and background tiles both stay out
    labelled = {("sparse", 0): [(0.0, 0.0, 31.0, 31.0)]}
    gen = rank_job(session, [req], labelled, "margin", tile=32)
    while True:
        try:
            next(gen)
        except StopIteration as done:
            assert len(done.value.keys) == 7 and done.value.background == 8
            break
