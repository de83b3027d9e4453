"""`cellclass train` beside a plain PyTorch + timm loop, from scratch, on data it has
never seen: macro-F1 on a held-out test set and end-to-end wall time.

The plain loop is what a user writes in 60 lines: read the files, per-image
per-channel standardisation, resize, Adam 1e-3, batch 16, random flips, no
validation split, the same architecture, input size and epochs.  Ours is the
command line a new user types: ``cellclass train DATA --arch A --input-size S
--epochs E --no-pretrained`` (defaults for everything else), or ``--preset P``.
Both are timed as whole commands (Python start-up, reading, training, saving),
interleaved per data set so a busy machine slows both alike.

The data sets come from ``benchmarks.indep_data`` (not ``core.synth``): one per
dtype class — 8-bit RGB, 12-bit in uint16, float32 of range 0-3e4, full-range
16-bit greyscale — plus the scaffoldnet-brightfield preset on greyscale tiles.

``python -m benchmarks.bench_train_vs_plain [--quick] [--out DIR]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import indep_data

# (row name, data set, how ours is started, architecture of the plain loop, input size)
ROWS = (
    ("rgb8-cells", "rgb8-cells", ["--arch", "resnet18"], "resnet18", 64),
    ("u12-texture", "u12-texture", ["--arch", "resnet18"], "resnet18", 64),
    ("f32-nlo-3ch", "f32-nlo-3ch", ["--arch", "resnet18"], "resnet18", 64),
    ("u16-fibres", "u16-fibres", ["--arch", "resnet18"], "resnet18", 64),
    ("preset scaffoldnet-brightfield", "u16-fibres", ["--preset", "scaffoldnet-brightfield"], "scaffoldnet", 128),
)
FULL = dict(n_train=240, n_test=120, epochs=8, seeds=(0,))
QUICK = dict(n_train=24, n_test=12, epochs=1, seeds=(0,), rows=("rgb8-cells", "f32-nlo-3ch"), size=32)

# What a user writes instead of `cellclass train`: argv = data, arch, size, epochs, seed, out
PLAIN_SCRIPT = r"""
import sys, pathlib, numpy as np, torch, timm, tifffile
from PIL import Image
data, arch, size, epochs, seed, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
torch.manual_seed(seed)
classes = sorted(p.name for p in pathlib.Path(data).iterdir() if p.is_dir())
def read(p):
    a = tifffile.imread(p) if p.suffix == ".tif" else np.asarray(Image.open(p))
    a = a.astype(np.float32)
    return a[None] if a.ndim == 2 else (a.transpose(2, 0, 1) if a.shape[-1] == 3 else a)
files = [(p, k) for k, c in enumerate(classes) for p in sorted((pathlib.Path(data) / c).iterdir())]
x = torch.stack([torch.nn.functional.interpolate(torch.from_numpy(read(p))[None], size=(size, size), mode="bilinear",
                 antialias=True)[0] for p, _ in files])
x = (x - x.mean((2, 3), keepdim=True)) / x.std((2, 3), keepdim=True).clamp_min(1e-6)
y = torch.tensor([k for _, k in files])
if arch == "scaffoldnet":  # the preset's own network, built by the package; the loop stays plain
    from napari_cellclass.core.models.registry import arch_entry, build_network
    net = build_network(arch_entry(arch).spec, x.shape[1], len(classes), "softmax")
else:
    net = timm.create_model(arch, pretrained=False, num_classes=len(classes), in_chans=x.shape[1])
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
for epoch in range(epochs):
    net.train()
    for idx in torch.randperm(len(x)).split(16):
        if len(idx) < 2:
            continue
        xb = x[idx].clone()
        for axis in (2, 3):  # each image its own random flips
            m = torch.rand(len(xb)) < 0.5
            xb[m] = xb[m].flip(axis)
        loss = torch.nn.functional.cross_entropy(net(xb), y[idx])
        opt.zero_grad(); loss.backward(); opt.step()
torch.save({"state": net.state_dict(), "classes": classes, "in_chans": x.shape[1]}, out)
"""


def _plain_f1(model_file: Path, arch: str, size: int, test_dir: Path) -> float:
    """Macro-F1 of the plain loop's saved network on the test tree, with its own preprocessing."""
    import tifffile
    import timm
    import torch
    from PIL import Image
    from sklearn.metrics import f1_score

    saved = torch.load(model_file, weights_only=True)
    classes, chans = saved["classes"], int(saved["in_chans"])
    if arch == "scaffoldnet":
        from napari_cellclass.core.models.registry import arch_entry, build_network

        net = build_network(arch_entry(arch).spec, chans, len(classes), "softmax")
    else:
        net = timm.create_model(arch, pretrained=False, num_classes=len(classes), in_chans=chans)
    net.load_state_dict(saved["state"])
    net.eval()
    truth, pred = [], []
    with torch.inference_mode():
        for k, c in enumerate(classes):
            for p in sorted((test_dir / c).iterdir()):
                a = (tifffile.imread(p) if p.suffix == ".tif" else np.asarray(Image.open(p))).astype(np.float32)
                a = a[None] if a.ndim == 2 else (a.transpose(2, 0, 1) if a.shape[-1] == 3 else a)
                t = torch.nn.functional.interpolate(torch.from_numpy(a)[None], size=(size, size), mode="bilinear",
                                                    antialias=True)
                t = (t - t.mean((2, 3), keepdim=True)) / t.std((2, 3), keepdim=True).clamp_min(1e-6)
                truth.append(k)
                pred.append(int(net(t).argmax(1)))
    return float(f1_score(truth, pred, average="macro"))


def _ours_f1(model_file: Path, test_dir: Path) -> float:
    from napari_cellclass.core.models.modelfile import load_model
    from napari_cellclass.core.evaluation.evaluate import evaluate

    return float(evaluate(load_model(model_file), str(test_dir), device="cpu")["macro_f1"])


def _timed(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} … failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall, done.stderr


def _one_row(root: Path, row: tuple, cfg: dict, seed: int, ours_first: bool, extra: list[str]) -> dict:
    name, dataset, how, plain_arch, size = row
    size = cfg.get("size", size)
    train_dir, test_dir = root / f"{dataset}-train-{seed}", root / f"{dataset}-test-{seed}"
    if not train_dir.exists():
        indep_data.write(train_dir, dataset, cfg["n_train"], size, seed=1000 + seed)
        indep_data.write(test_dir, dataset, cfg["n_test"], size, seed=2000 + seed)  # never seen in training
    tag = name.replace(" ", "_")
    ours_file, plain_file = root / f"{tag}-{seed}.safetensors", root / f"{tag}-{seed}.pt"
    size_args = [] if how[0] == "--preset" else ["--input-size", str(size), "--no-pretrained"]
    ours_cmd = [sys.executable, "-m", "napari_cellclass.cli", "train", str(train_dir), *how, *size_args,
                "--epochs", str(cfg["epochs"]), "--seed", str(seed), "--device", "cpu", "--no-progress",
                "--out", str(ours_file), *extra]
    plain_cmd = [sys.executable, "-c", PLAIN_SCRIPT, str(train_dir), plain_arch, str(size), str(cfg["epochs"]),
                 str(seed), str(plain_file)]
    runs = {}
    for who in (("ours", "plain") if ours_first else ("plain", "ours")):
        runs[who] = _timed(ours_cmd if who == "ours" else plain_cmd)
    f1_ours, f1_plain = _ours_f1(ours_file, test_dir), _plain_f1(plain_file, plain_arch, size, test_dir)
    kept = [ln for ln in runs["ours"][1].splitlines() if "kept" in ln or "saved" in ln][-1:]
    return {"row": name, "seed": seed, "f1_ours": f1_ours, "f1_plain": f1_plain, "wall_ours_s": runs["ours"][0],
            "wall_plain_s": runs["plain"][0], "ratio": runs["ours"][0] / runs["plain"][0],
            "ours_said": kept[0].strip() if kept else ""}


def to_markdown(rows: list[dict], cfg: dict) -> str:
    lines = [f"# cellclass train vs a plain PyTorch + timm loop ({cfg['n_train']} train / {cfg['n_test']} test images, "
             f"{cfg['epochs']} epochs, CPU)", "",
             "| data set | seed | macro-F1 ours | macro-F1 plain | wall ours (s) | wall plain (s) | ours / plain |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['row']} | {r['seed']} | {r['f1_ours']:.3f} | {r['f1_plain']:.3f} | {r['wall_ours_s']:.1f} | "
                     f"{r['wall_plain_s']:.1f} | {r['ratio']:.3f} |")
    tot_o, tot_p = sum(r["wall_ours_s"] for r in rows), sum(r["wall_plain_s"] for r in rows)
    lines.append(f"| **all** | | {np.mean([r['f1_ours'] for r in rows]):.3f} | {np.mean([r['f1_plain'] for r in rows]):.3f} "
                 f"| {tot_o:.1f} | {tot_p:.1f} | {tot_o / tot_p:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_train_vs_plain", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes and two data sets: proves it runs (CI)")
    p.add_argument("--out", default="benchmark-results")
    p.add_argument("--rows", default=None, help="comma-separated row names (default: all, or the quick ones)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default: 0)")
    p.add_argument("--ours-args", default="", help="extra `cellclass train` flags, e.g. '--val-fraction 0'")
    args = p.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    wanted = args.rows.split(",") if args.rows else cfg.get("rows")
    if args.seeds:
        cfg["seeds"] = tuple(int(s) for s in args.seeds.split(","))
    rows = [r for r in ROWS if wanted is None or r[0] in wanted]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (seed, row) in enumerate((s, r) for s in cfg["seeds"] for r in rows):
            res = _one_row(Path(tmp), row, cfg, seed, ours_first=i % 2 == 0, extra=args.ours_args.split())
            results.append(res)
            print(f"[train_vs_plain] {res['row']} seed {seed}: F1 ours {res['f1_ours']:.3f} plain {res['f1_plain']:.3f}, "
                  f"wall ratio {res['ratio']:.3f} ({res['ours_said']})", file=sys.stderr, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg["ours_args"] = args.ours_args
    (out / "train_vs_plain.json").write_text(json.dumps({"config": {k: v for k, v in cfg.items()}, "rows": results}, indent=2))
    table = to_markdown(results, cfg)
    (out / "train_vs_plain.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
