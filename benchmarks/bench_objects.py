"""Objects per second of ``cellclass predict --objects`` beside a plain script (skimage
``regionprops`` + crop + ``resize`` + the same timm network), in one run.

Both are whole commands (Python start-up, imports, model creation, reading the two
TIFFs, the loop), timed with the same image and label image: a grid of ``--objects``
discs on a uint8 RGB image; the model is ``--arch`` at ``--size`` px with random
weights (the figure is throughput, not accuracy).  The two commands run interleaved
(ours, plain, ours, plain, ...) ``--repeats`` times each and the median of each is
reported, with the load average before and after: on a shared machine a run of one
command after the other in blocks measures the neighbours' load, not the commands.
The in-process row times ``predict_objects`` once warm, without start-up.  The
issue's target: ratio (ours / plain, objects/s) >= 1.0.

``python -m benchmarks.bench_objects [--objects N] [--arch A] [--size S] [--batch B] [--device D] [--repeats R] [--out DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PLAIN = r"""
import sys, numpy as np, tifffile, torch, timm
from skimage.measure import regionprops
from skimage.transform import resize
arch, size, device, batch, img_path, lab_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6]
img, lab = tifffile.imread(img_path), tifffile.imread(lab_path)
net = timm.create_model(arch, pretrained=False, num_classes=4).eval().to(device)
mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
def flush(crops):
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).to(device)
    with torch.inference_mode():
        return net(x).softmax(1).cpu().numpy()
out, crops = [], []
for r in regionprops(lab):
    r0, c0, r1, c1 = r.bbox
    crop = resize(img[r0:r1, c0:c1], (size, size), anti_aliasing=True, preserve_range=True).astype(np.float32) / 255
    crops.append((crop - mean) / std)
    if len(crops) == batch:
        out.append(flush(crops)); crops = []
if crops:
    out.append(flush(crops))
print(sum(len(o) for o in out))
"""


def make_data(root: Path, n_objects: int, seed: int = 0) -> tuple[Path, Path]:
    """An RGB uint8 image with ``n_objects`` discs of radius 6..12 on a grid, and its label image."""
    import tifffile
    from skimage.draw import disk

    side = int(np.ceil(np.sqrt(n_objects)))
    pitch = 28
    h = w = side * pitch
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    lab = np.zeros((h, w), np.uint32)
    for i in range(n_objects):
        r, c = divmod(i, side)
        rr, cc = disk((r * pitch + pitch / 2, c * pitch + pitch / 2), rng.uniform(6, 12), shape=(h, w))
        lab[rr, cc] = i + 1
        img[rr, cc] = rng.integers(80, 255, 3, dtype=np.uint8)
    tifffile.imwrite(root / "cells.tif", img, photometric="rgb")
    tifffile.imwrite(root / "cells_labels.tif", lab)
    return root / "cells.tif", root / "cells_labels.tif"


def phases(bundle, image: np.ndarray, labels: np.ndarray, size: int, batch: int) -> dict:
    """Where the per-object time goes, in this process: the plain script's regionprops +
    crop + ``resize`` against our crops + preprocessing (``network_inputs``), and one
    network pass over all batches (the same network for both)."""
    import torch
    from skimage.measure import regionprops
    from skimage.transform import resize

    from napari_cellclass.core.inference.objects import _crops
    from napari_cellclass.core.inference.predict import (
        network_inputs,
        resolve_source,
        run_network,
    )
    from napari_cellclass.core.io.images import inspect
    from napari_cellclass.core.io.objects import check_labels

    t0 = time.perf_counter()
    for r in regionprops(labels):
        r0, c0, r1, c1 = r.bbox
        resize(image[r0:r1, c0:c1], (size, size), anti_aliasing=True, preserve_range=True).astype(np.float32)
    t_plain = time.perf_counter() - t0
    dev = torch.device("cpu")
    t0 = time.perf_counter()
    data, axis, rgb, name = resolve_source(image, 0, "auto")
    layout, vmax = inspect(data, axis, bundle.in_chans, rgb, name)
    planes = [c.plane for c in _crops(data, layout, check_labels(labels, layout, "labels", name), 0, False,
                                      bundle.in_chans, None, name, "labels")]
    xs = [network_inputs(bundle, planes[i:i + batch], [vmax] * len(planes[i:i + batch]), dev)
          for i in range(0, len(planes), batch)]
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    for x in xs:
        run_network(bundle, x, dev)
    return {"plain_crop_resize_s": t_plain, "ours_crop_preprocess_s": t_ours, "network_s": time.perf_counter() - t0}


def _timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def run(n_objects: int, arch: str, size: int, batch: int, device: str, repeats: int = 3) -> dict:
    from napari_cellclass import build_model, predict_objects, save_model
    from napari_cellclass.core.inference.options import RunOptions

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        img, lab = make_data(root, n_objects)
        bundle = build_model(arch, classes=["a", "b", "c", "d"], input_size=(size, size))
        model = save_model(bundle, root / "model.safetensors")
        ours_cmd = [sys.executable, "-m", "napari_cellclass.cli", "predict", str(model), str(img), "--objects", str(lab),
                    "--csv", str(root / "out.csv"), "--no-progress", "--no-resume", "--device", device,
                    "--batch-size", str(batch)]
        plain_cmd = [sys.executable, "-c", PLAIN, arch, str(size), device, str(batch), str(img), str(lab)]
        load_before = os.getloadavg()
        ours_s, plain_s = [], []
        for _ in range(repeats):  # interleaved: a change in the machine's load hits both alike
            ours_s.append(_timed(ours_cmd))
            plain_s.append(_timed(plain_cmd))
        load_after = os.getloadavg()
        t_ours, t_plain = statistics.median(ours_s), statistics.median(plain_s)
        rows = (root / "out.csv").read_text().count("\n") - 1
        import tifffile

        image, labels = tifffile.imread(img), tifffile.imread(lab)
        opts = RunOptions(device=device, batch_size=batch)
        predict_objects(bundle, image, labels, options=opts)  # warm-up
        t0 = time.perf_counter()
        predict_objects(bundle, image, labels, options=opts)
        t_inproc = time.perf_counter() - t0
        split = phases(bundle, image, labels, size, batch) if device == "cpu" else {}
    return {"objects": n_objects, "rows_written": rows, "arch": arch, "size": size, "batch": batch, "device": device,
            "repeats": repeats, "cli_runs_s": ours_s, "plain_runs_s": plain_s,
            "load_average_before": load_before, "load_average_after": load_after, "cpu_count": os.cpu_count(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "cli_s": t_ours, "plain_script_s": t_plain, "cli_objects_per_s": n_objects / t_ours,
            "plain_objects_per_s": n_objects / t_plain, "ratio_objects_per_s": t_plain / t_ours,
            "predict_objects_warm_objects_per_s": n_objects / t_inproc, **split}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_objects", description=__doc__.splitlines()[0])
    p.add_argument("--objects", type=int, default=2000)
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3, help="runs of each command, interleaved; the median is reported")
    p.add_argument("--out", default=None, help="write objects.json here")
    args = p.parse_args(argv)
    res = run(args.objects, args.arch, args.size, args.batch, args.device, max(1, args.repeats))
    text = json.dumps(res, indent=1)
    print(text)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "objects.json").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
