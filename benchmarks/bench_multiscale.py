"""Whole-image classification and a tiled map of a large OME-Zarr pyramid, read lazily,
beside today's path (level 0, or the tiled level, read into memory first).

``python -m benchmarks.bench_multiscale [--size 12000] [--map-level 2] [--out DIR]``

The store is written once with ome-zarr-py (levels computed chunk by chunk with dask,
so writing it never holds level 0 either).  Every measurement runs in a fresh
subprocess so its peak resident memory (``ru_maxrss``) is its own; ``tracemalloc``
adds the peak of the allocations Python and numpy make (torch's own buffers are not
traced, so RSS is the figure that counts).  The model is a resnet18 at 64x64 px with
random weights: the reading and tiling cost, not the network, is what is measured.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

INPUT = 64


def _level(size: int, factor: int):
    """Level ``factor`` of a smooth synthetic RGB image, lazily, chunk by chunk."""
    import dask.array as da

    n = size // factor

    def block(block_info=None):
        (y0, y1), (x0, x1), _ = block_info[None]["array-location"]
        yy, xx = np.meshgrid(np.arange(y0, y1) * factor / size, np.arange(x0, x1) * factor / size, indexing="ij")
        chans = [np.sin(20 * yy + 3 * c) * np.cos(15 * xx - c) for c in range(3)]
        return ((np.stack(chans, -1) + 1) * 127.5).astype(np.uint8)

    return da.map_blocks(block, chunks=((1024,) * (n // 1024) + ((n % 1024,) if n % 1024 else ()),) * 2 + ((3,),),
                         dtype=np.uint8, meta=np.empty((0, 0, 0), np.uint8))


def write_store(path: Path, size: int, levels: int = 5) -> None:
    import zarr
    from ome_zarr.writer import write_multiscale

    group = zarr.open_group(str(path), mode="w")
    pyramid = [_level(size, 2 ** k).transpose(2, 0, 1).rechunk((1, 512, 512)) for k in range(levels)]
    transforms = [[{"type": "scale", "scale": [1.0, 0.5 * 2 ** k, 0.5 * 2 ** k]}] for k in range(levels)]
    write_multiscale(pyramid, group, axes=[{"name": "c", "type": "channel"}, {"name": "y", "type": "space", "unit": "micrometer"},
                                          {"name": "x", "type": "space", "unit": "micrometer"}],
                     coordinate_transformations=transforms, storage_options={"chunks": (1, 512, 512)})


def _measure(kind: str, store: str, model: str, map_level: int) -> dict:
    """Runs in the subprocess: one measurement, as JSON on stdout."""
    import resource
    import tracemalloc

    # imported before the clock starts: they cost ~20 s on a busy 2-core machine, not part of the figure
    import dask.array  # noqa: F401
    import ome_zarr.reader  # noqa: F401
    import torch

    from napari_cellclass import RunOptions, load_model, predict, predict_map
    from napari_cellclass.core.io.omezarr import read_omezarr

    torch.set_num_threads(2)
    bundle = load_model(model)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracemalloc.start()
    t0 = time.perf_counter()
    opts = RunOptions(device="cpu", batch_size=64, level=map_level)
    if kind == "classify lazily":
        out = predict(bundle, store, options=opts)
    elif kind == "classify level 0 in memory":
        out = predict(bundle, np.asarray(read_omezarr(store).levels[0].data), channel_axis=0, device="cpu")
    elif kind == "tiled map lazily":
        out = predict_map(bundle, store, tile=INPUT, overlap=0.0, options=opts)
    else:  # today's path: the level read whole, then tiled
        level = np.asarray(read_omezarr(store).levels[map_level].data)
        out = predict_map(bundle, level, tile=INPUT, overlap=0.0, options=RunOptions(device="cpu", batch_size=64, channel_axis=0))
    seconds = time.perf_counter() - t0
    peak_traced = tracemalloc.get_traced_memory()[1] / 2 ** 20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"kind": kind, "seconds": round(seconds, 2), "peak_rss_mib": round(rss), "rss_after_model_load_mib": round(base_rss),
            "peak_traced_mib": round(peak_traced, 1), "shape": list(np.shape(out))}


KINDS = ("classify lazily", "classify level 0 in memory", "tiled map lazily", "tiled map level in memory")


def run(size: int, map_level: int, out: Path | None, kinds: tuple[str, ...] = KINDS, stem: str = "multiscale") -> list[dict]:
    import tempfile

    from napari_cellclass import build_model, save_model

    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "big.ome.zarr"
        t0 = time.perf_counter()
        write_store(store, size)
        write_s = time.perf_counter() - t0
        model = save_model(build_model("resnet18", classes=["a", "b", "c"], input_size=(INPUT, INPUT)), Path(tmp) / "m.safetensors")
        rows = []
        for kind in kinds:
            code = (f"import json, benchmarks.bench_multiscale as b; "
                    f"print(json.dumps(b._measure({kind!r}, {str(store)!r}, {str(model)!r}, {map_level})))")
            res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    level0_mib = size * size * 3 / 2 ** 20
    title = (f"# OME-Zarr pyramid, {size}x{size} RGB uint8 (level 0 = {level0_mib:.0f} MiB; store written in {write_s:.0f} s); "
             f"map on level {map_level}, {INPUT}-px tiles, no overlap")
    lines = [title, "",
             "| measurement | seconds | peak RSS MiB | RSS after model load MiB | peak traced MiB | output |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['kind']} | {r['seconds']} | {r['peak_rss_mib']} | {r['rss_after_model_load_mib']} | {r['peak_traced_mib']} | {r['shape']} |"
              for r in rows]
    text = "\n".join(lines)
    print(text)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{stem}.md").write_text(text + "\n")
        (out / f"{stem}.json").write_text(json.dumps({"size": size, "map_level": map_level, "rows": rows}, indent=1))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=12000, help="level-0 side in pixels")
    p.add_argument("--map-level", type=int, default=2, help="the pyramid level the tiled map reads")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--only", action="append", choices=KINDS, help="run only these measurements (repeatable)")
    p.add_argument("--stem", default="multiscale", help="file name (no suffix) of the .md/.json written under --out")
    a = p.parse_args(argv)
    run(a.size, a.map_level, a.out, tuple(a.only or KINDS), a.stem)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
