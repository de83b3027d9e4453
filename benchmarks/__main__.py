"""``python -m benchmarks [--mode ci|full] [--device auto] [--out DIR] [--only a,b]``."""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from pathlib import Path

SECTIONS = ("predict", "cli", "tiling", "explain", "train", "ensemble", "napari")

CONFIGS = {
    # seconds: proves every section works (the test suite runs this)
    "ci": dict(repeats=1, predict_arch="resnet18", predict_size=32, predict_n=8, predict_batch=4,
               tile_arch="resnet18", tile_size=32, tile_batch=8, tile_overlap=0.5, tile_images=[(96, 128), (192, 256)],
               explain_arch="resnet18", explain_size=32, explain_n=2,
               train_arch="senescence_cnn", train_size=32, train_n=16, train_batch=8,
               ensemble_size=75, ensemble_n=2, ensemble_members=2, train_warmup=False, napari_seconds=1.0, cli_n=8, cli_size=32, cli_arch="resnet18"),
    # by hand: the figures in the notes
    "full": dict(repeats=3, predict_arch="resnet50", predict_size=224, predict_n=256, predict_batch=64,
                 tile_arch="resnet18", tile_size=224, tile_batch=64, tile_overlap=0.5,
                 tile_images=[(1922, 2560), (8192, 8192)],
                 explain_arch="resnet50", explain_size=224, explain_n=16,
                 train_arch="resnet50", train_size=224, train_n=256, train_batch=32,
                 ensemble_size=224, ensemble_n=64, ensemble_members=None, train_warmup=True, napari_seconds=5.0,
                 cli_n=100, cli_size=224, cli_arch="tf_efficientnet_lite0", compile=True),
}
# a 2-core CPU finishes the full run in minutes with these (the table states the sizes)
CPU_SCALE = dict(predict_n=128, train_arch="resnet18", train_size=160, train_n=128, ensemble_n=8, train_epochs=2)
GPU_SCALE = dict(predict_n=4096, predict_batch=256, tile_batch=256, train_n=2048, train_batch=128, ensemble_n=256)


def to_markdown(results: list[dict], meta: dict) -> str:
    lines = [f"# napari-cellclass benchmarks ({meta['mode']}, {meta['device']})", "",
             f"{meta['platform']}; torch {meta['torch']}; {meta['date']}", "",
             "| section | measurement | value | baseline | ratio | target | notes |", "|---|---|---|---|---|---|---|"]
    for r in results:
        base = f"{r['baseline']:.4g} {r['unit']} ({r['baseline_name']})" if r["baseline"] is not None else ""
        ratio = f"{r['ratio']:.3f}" if r["ratio"] is not None else ""
        extra = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["extra"].items())
        lines.append(f"| {r['section']} | {r['name']} | {r['value']:.4g} {r['unit']} | {base} | {ratio} | {r['target']} | {extra} {r['notes']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--mode", choices=sorted(CONFIGS), default="full")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="benchmark-results")
    p.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    args = p.parse_args(argv)

    import torch

    from napari_cellclass.core.device import resolve_device

    device = resolve_device(args.device)
    cfg = dict(CONFIGS[args.mode])
    if device.type != "cuda" and args.mode == "full":
        cfg.update(CPU_SCALE)
    if device.type == "cuda" and args.mode == "full":
        cfg.update(GPU_SCALE)
        torch.backends.cudnn.benchmark = True  # fixed tile shapes: let cuDNN pick the fastest kernels
    results = []
    for name in [s for s in args.only.split(",") if s]:
        if name not in SECTIONS:
            p.error(f"unknown section {name!r}; choose from {', '.join(SECTIONS)}")
        try:
            module = importlib.import_module(f"benchmarks.bench_{name}")
        except ModuleNotFoundError as err:
            print(f"[{name}] skipped: {err}", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        for r in module.run(cfg, device):
            results.append(r.to_dict())
            print(f"[{name}] {r.name}: {r.value:.4g} {r.unit}" + (f" (baseline {r.baseline:.4g}, ratio {r.ratio:.3f})" if r.baseline else ""), file=sys.stderr)
        print(f"[{name}] done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    meta = {"mode": args.mode, "device": str(device) + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""),
            "torch": torch.__version__, "platform": f"{platform.system()} {platform.machine()}, {torch.get_num_threads()} threads",
            "date": time.strftime("%Y-%m-%d %H:%M")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    (out / "results.md").write_text(to_markdown(results, meta))
    print(to_markdown(results, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
