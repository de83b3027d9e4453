"""A tiled probability map of a 50,000 x 50,000 RGB pyramid: time, progress, Cancel, RSS over time.

``python -m benchmarks.bench_multiscale_50k [--size 50000] [--max-tiles 3000] [--out DIR]``

The pyramid is never written: each level is a zarr-like array (shape, dtype, 512 x 512
chunks per channel) whose chunks are generated when read (a smooth RGB pattern), so the
7.5 GB of level 0 exist only chunk by chunk, as a store's would once decompressed.  Its
pixel size is 0.25 um at level 0, doubling per level (6 levels).  Two runs, each in a
fresh subprocess with RSS sampled every 0.25 s by a thread:

* ``level 0``: tiles of 256 px (resized to the 64-px model input), no overlap, the map
  job's generator driven with the CLI's progress bar and closed ("Cancel") after
  ``--max-tiles`` tiles; the full run's time is extrapolated from the tiles per second;
* ``auto``: the model records a training pixel size of 2 um, so the automatic level
  choice is level 3 (6250 x 6250 px, 2 um); 64-px tiles, run to the end.

Writes ``multiscale_50k.json`` (every figure, RSS sampled over time) and ``.md`` under ``--out``.

The model is a resnet18 with random weights: reading and tiling, not accuracy, is measured.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

INPUT = 64
CHUNK = 512


class GeneratedLevel:
    """Level ``factor`` of a ``size``-px smooth RGB image as (c, y, x) uint8, generated on read."""

    def __init__(self, size: int, factor: int) -> None:
        n = -(-size // factor)
        self.size, self.factor = size, factor
        self.shape, self.dtype, self.ndim = (3, n, n), np.dtype(np.uint8), 3
        self.chunks = (1, CHUNK, CHUNK)
        self.reads = 0  # regions generated
        self.pixels = 0

    def __getitem__(self, index):
        index = index if isinstance(index, tuple) else (index,)
        index = index + (slice(None),) * (3 - len(index))
        cs, ys, xs = (np.arange(s)[i] for s, i in zip(self.shape, index))
        yy, xx = np.meshgrid(np.atleast_1d(ys) * self.factor / self.size, np.atleast_1d(xs) * self.factor / self.size,
                             indexing="ij")
        out = np.stack([(np.sin(200 * yy + 3 * c) * np.cos(150 * xx - c) + 1) * 127.5 for c in np.atleast_1d(cs)])
        out = out.astype(np.uint8)
        ys, xs = np.atleast_1d(ys), np.atleast_1d(xs)
        if ys.size and xs.size:  # as zarr would: every chunk the region touches is read whole
            self.reads += len(np.atleast_1d(cs)) * (ys[-1] // CHUNK - ys[0] // CHUNK + 1) * (xs[-1] // CHUNK - xs[0] // CHUNK + 1)
        self.pixels += out.size
        squeeze = tuple(0 for i in index if not isinstance(i, slice))  # integer indices drop their axis
        return out.reshape([d for d, i in zip(out.shape, index) if isinstance(i, slice)]) if squeeze else out


def pyramid(size: int, levels: int = 6):
    from napari_cellclass.core.io.multiscale import Level, Pyramid

    lv = []
    for k in range(levels):
        f = 2 ** k
        lv.append(Level(k, GeneratedLevel(size, f), (float(f), float(f)), ((f - 1) / 2, (f - 1) / 2), (0.25 * f, 0.25 * f)))
    return Pyramid(lv, f"generated {size}x{size}", 0, False, [], "cyx", "micrometer")


class RssSampler(threading.Thread):
    def __init__(self, every: float = 0.25) -> None:
        super().__init__(daemon=True)
        import psutil

        self.proc, self.every, self.samples, self.done_tiles = psutil.Process(), every, [], 0
        self.t0, self._halt = time.perf_counter(), threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append((round(time.perf_counter() - self.t0, 2), round(self.proc.memory_info().rss / 2 ** 20, 1),
                                 self.done_tiles))
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def _measure(kind: str, size: int, max_tiles: int, model: str) -> dict:
    """Runs in the subprocess: one run, as JSON on stdout."""
    import torch

    from napari_cellclass import RunOptions, load_model
    from napari_cellclass.cli._progress import Bar
    from napari_cellclass.core.inference.levels import chosen_level, map_pick
    from napari_cellclass.core.inference.tiling import predict_map_steps, tile_grid

    torch.set_num_threads(2)
    bundle = load_model(model)
    pyr = pyramid(size)
    tile = 256 if kind == "level 0" else INPUT
    opts = RunOptions(device="cpu", batch_size=64, level=0 if kind == "level 0" else None)
    level = chosen_level(pyr, map_pick(bundle, opts))
    grid = tile_grid(pyr.plane_hw(level.index), tile, 0.0)
    sampler = RssSampler()
    sampler.start()
    bar, batch_s = Bar(stream=sys.stderr), []
    steps = predict_map_steps(bundle, pyr, tile, 0.0, options=opts)
    max_tiles = max_tiles if kind == "level 0" else grid.n_tiles
    t0 = last = time.perf_counter()
    done, cancelled, cancel_s, result_shape = 0, False, None, None
    try:
        while True:
            p = next(steps)
            now = time.perf_counter()
            batch_s.append(now - last)
            last, done, sampler.done_tiles = now, p.done, p.done
            bar.update(p.done, p.total, "tiles")
            if p.done >= max_tiles and p.done < p.total:
                c0 = time.perf_counter()
                steps.close()  # what the dock's Cancel does: the job stops between batches
                cancel_s, cancelled = time.perf_counter() - c0, True
                break
    except StopIteration as stop:
        result_shape = list(stop.value[0].shape)
    seconds = time.perf_counter() - t0
    bar.close()
    sampler.stop()
    rss = [s[1] for s in sampler.samples]
    data = level.data
    per_tile = seconds / max(done, 1)
    return {
        "kind": kind, "level": level.index, "level_hw": list(pyr.plane_hw(level.index)),
        "pixel_size_um": level.pixel_size[0], "tile_px": tile, "grid_tiles": grid.n_tiles, "tiles_done": done,
        "cancelled": cancelled, "cancel_seconds": None if cancel_s is None else round(cancel_s, 4),
        "median_batch_seconds": round(float(np.median(batch_s[1:] or batch_s)), 3),
        "seconds": round(seconds, 1), "tiles_per_second": round(done / seconds, 2),
        "full_run_seconds_extrapolated": round(per_tile * grid.n_tiles), "map_shape": result_shape,
        "chunks_generated": int(data.reads), "chunks_touched": _chunks_touched(grid, done),
        "pixels_generated_mib": round(float(data.pixels) / 2 ** 20, 1),
        "rss_mib_start": rss[0], "rss_mib_peak": max(rss), "rss_mib_end": rss[-1],
        "rss_mib_peak_second_half": max(rss[len(rss) // 2:]),
        "rss_samples": _decimate(sampler.samples, 240),
    }


def _chunks_touched(grid, done: int) -> int:
    """(channel, y, x) chunks under the first ``done`` tiles (tiles run row by row here)."""
    keys = set()
    th, tw = grid.tile_hw
    for y, x in [(y, x) for y in grid.ys for x in grid.xs][:done]:
        for cy in range(y // CHUNK, (y + th - 1) // CHUNK + 1):
            for cx in range(x // CHUNK, (x + tw - 1) // CHUNK + 1):
                keys.add((cy, cx))
    return 3 * len(keys)


def _decimate(samples: list, n: int) -> list:
    step = max(1, len(samples) // n)
    return [list(s) for s in samples[::step]]


KINDS = ("level 0", "auto")


def run(size: int, max_tiles: int, out: Path | None, kinds: tuple[str, ...] = KINDS) -> list[dict]:
    import tempfile

    from napari_cellclass import build_model, save_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        bundle = build_model("resnet18", classes=["a", "b", "c"], input_size=(INPUT, INPUT))
        bundle.provenance["pixel_size"] = 2.0  # um: the automatic choice is level 3
        model = save_model(bundle, Path(tmp) / "m.safetensors")
        for kind in kinds:
            code = (f"import json, benchmarks.bench_multiscale_50k as b; "
                    f"print(json.dumps(b._measure({kind!r}, {size}, {max_tiles}, {str(model)!r})))")
            res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
            sys.stderr.write(res.stderr[-3000:])
            if res.returncode:
                raise SystemExit(f"the {kind!r} run failed")
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
            print({k: v for k, v in rows[-1].items() if k != "rss_samples"}, flush=True)
    if out is not None:
        write_report(rows, size, max_tiles, out)
    return rows


def _timeline(row: dict, n: int = 10) -> str:
    s = row["rss_samples"]
    picks = [s[min(len(s) - 1, round(i * (len(s) - 1) / n))] for i in range(n + 1)]
    return " | ".join(f"{t:.0f} s: {rss:.0f} MiB ({tiles} tiles)" for t, rss, tiles in picks)


def write_report(rows: list[dict], size: int, max_tiles: int, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "multiscale_50k.json").write_text(json.dumps({"size": size, "max_tiles": max_tiles, "rows": rows}, indent=1))
    lines = [f"# Tiled map of a {size:,} x {size:,} RGB pyramid (generated chunk by chunk, 512 x 512 per channel)", "",
             ("| run | level (px, um/px) | tile px | tiles done / grid | seconds | tiles/s | full run s (extrapolated) "
              "| chunks read / touched | RSS MiB start / peak / end | Cancel s |"), "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['kind']} | {r['level']} ({r['level_hw'][0]}², {r['pixel_size_um']}) | {r['tile_px']} "
                     f"| {r['tiles_done']} / {r['grid_tiles']} | {r['seconds']} | {r['tiles_per_second']} "
                     f"| {r['full_run_seconds_extrapolated']} | {r['chunks_generated']} / {r['chunks_touched']} "
                     f"| {r['rss_mib_start']:.0f} / {r['rss_mib_peak']:.0f} / {r['rss_mib_end']:.0f} "
                     f"| {r['cancel_seconds'] if r['cancelled'] else '-'} |")
    lines += ["", "RSS over time (11 of the samples taken every 0.25 s):", ""]
    lines += [f"- {r['kind']}: {_timeline(r)}" for r in rows]
    (out / "multiscale_50k.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=50000, help="level-0 side in pixels")
    p.add_argument("--max-tiles", type=int, default=3000, help="Cancel after this many tiles (when the grid is larger)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--only", action="append", choices=KINDS, help="run only these (repeatable)")
    a = p.parse_args(argv)
    run(a.size, a.max_tiles, a.out, tuple(a.only or KINDS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
