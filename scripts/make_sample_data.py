#!/usr/bin/env python
"""Regenerate the sample images shipped in src/napari_cellclass/sample_data/.

One small image per modality of the five studies, drawn by ``core.synth`` with a
fixed seed (so this script reproduces the committed files bit for bit), plus a short
phase-contrast stack, and ``samples.json`` describing each file (task, true classes,
channel names, seed).  Run from the repository root:

    python scripts/make_sample_data.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SEED = 2024
OUT = ROOT / "src" / "napari_cellclass" / "sample_data"

#: file stem -> (synthetic task, image indices, size or None for the task's default)
SAMPLES: dict[str, tuple[str, list[int], tuple[int, int] | None]] = {
    "cell_line": ("cell-line", [1], None),
    "cell_line_stack": ("cell-line", [4, 5, 6, 7], (192, 256)),
    "brightfield": ("brightfield", [0], None),
    "actin": ("actin", [2], None),
    "senescence": ("senescence", [1], None),
    "protein": ("protein", [3], None),
}


def _write(path: Path, data: np.ndarray, layout: str) -> None:
    import tifffile
    from skimage.io import imsave

    if path.suffix == ".png":
        imsave(path, data, check_contrast=False)
    else:
        photometric = "rgb" if layout.endswith("S") else "minisblack"  # a 3-channel CYX is not RGB
        tifffile.imwrite(path, data, compression="zlib", photometric=photometric, metadata={"axes": layout})


def main(argv: list[str] | None = None) -> int:
    from napari_cellclass.core.synth import TASKS, generate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"output folder (default: {OUT})")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    index: dict[str, dict] = {}
    for stem, (task, picks, size) in SAMPLES.items():
        info = TASKS[task]
        s = generate(task, max(picks) + 1, seed=SEED, size=size)
        images = [s.images[i] for i in picks]
        labels = [[s.classes[k] for k in s.labels[i]] for i in picks]
        stack = len(picks) > 1
        data = np.stack(images) if stack else images[0]
        layout = ("T" if stack else "") + info.layout
        # PNG for greyscale and RGB single images; TIFF (axes in the file) for the rest
        suffix = ".png" if not stack and info.layout in ("YX", "YXS") and data.dtype == np.uint8 else ".tif"
        path = args.out / f"{stem}{suffix}"
        _write(path, data, layout)
        index[stem] = {
            "file": path.name, "task": task, "modality": info.modality, "study": info.study,
            "axes": layout, "channel_names": list(info.channel_names), "classes": list(s.classes),
            "true_classes": labels if stack else labels[0], "seed": SEED, "indices": picks,
            "note": "synthetic image from napari_cellclass.core.synth; not a real micrograph",
        }
        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {data.shape} {data.dtype} "
              f"{path.stat().st_size // 1024} KiB", file=sys.stderr)
    (args.out / "samples.json").write_text(json.dumps(index, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
