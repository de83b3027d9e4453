"""Tiled probability maps of large images: time and peak memory vs image size."""

from __future__ import annotations

import torch

from napari_cellclass import build_model
from napari_cellclass.core.inference.tiling import predict_map_steps

from ._measure import Result, VirtualImage, peak_memory


def _run_map(bundle, image, tile, overlap, batch, device):
    steps = predict_map_steps(bundle, image, tile=tile, overlap=overlap, batch_size=batch, device=device,
                              amp=device.type == "cuda")
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def run(cfg: dict, device: torch.device) -> list[Result]:
    import time

    arch, tile, batch = cfg["tile_arch"], cfg["tile_size"], cfg["tile_batch"]
    bundle = build_model(arch, classes=["a", "b", "c", "d"], input_size=(tile, tile))
    bundle.network.to(device)
    _run_map(bundle, VirtualImage(tile * 2, tile * 2), tile, 0.5, batch, device)  # warm-up
    out = []
    for h, w in cfg["tile_images"]:
        image = VirtualImage(h, w)
        with peak_memory(device) as mem:
            t0 = time.perf_counter()
            prob_map, grid = _run_map(bundle, image, tile, cfg["tile_overlap"], batch, device)
            if device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
        map_mb = prob_map.nbytes / 2**20
        out.append(Result(
            "tiling", f"predict_map {w}x{h} RGB, {arch}, tile {tile}, overlap {cfg['tile_overlap']}", dt, "s",
            None, "", "memory bounded by the output map, not the image", str(device),
            extra={"tiles": grid.n_tiles, "tiles_per_s": grid.n_tiles / dt, "peak_mb": mem["peak_mb"],
                   "output_map_mb": map_mb, "image_mb_if_loaded": h * w * 3 / 2**20, "map_shape": list(prob_map.shape)},
        ))
    return out
