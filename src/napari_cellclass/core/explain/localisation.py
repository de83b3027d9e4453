"""Localisation scores of every method on a data set with ground-truth masks.

Reads exactly what ``core.synth.write_dataset("protein", …)`` writes: ``labels.csv``
(``path,labels``; labels ';'-joined), ``classes.txt`` and ``masks/<stem>.tif``
(K, H, W) 0/1 in ``classes.txt`` order.  Each (image, present class) pair is
scored with the map of that class (the true class is explained, as localisation
benchmarks do).  The mask-IoU threshold is chosen on a validation split and every
reported number comes from the other (test) split.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..models.bundle import ModelBundle
from ..errors import CellclassError, DataError
from . import faithfulness as E
from .engine import explain_batch


def read_masked_dataset(data: str | Path, masks: str | Path | None = None, limit: int | None = None
                        ) -> tuple[list[Path], list[list[str]], list[str], list[Path]]:
    """(image paths, label names per image, class names, mask paths) of a synth-protein layout."""
    root = Path(data)
    manifest = root / "labels.csv" if root.is_dir() else root
    root = manifest.parent
    if not manifest.is_file():
        raise DataError(f"{manifest} does not exist", "point DATA at a folder with labels.csv (cellclass synth protein …)")
    classes_txt = root / "classes.txt"
    classes = [c.strip() for c in classes_txt.read_text().splitlines() if c.strip()] if classes_txt.is_file() else []
    mask_dir = Path(masks) if masks is not None else root / "masks"
    paths, labels, mask_paths = [], [], []
    with open(manifest, newline="") as fh:
        for row in csv.DictReader(fh):
            if "path" not in row or "labels" not in row:
                raise DataError(f"{manifest} needs the columns path,labels")
            p = root / row["path"]
            m = mask_dir / f"{Path(row['path']).stem}.tif"
            if not m.is_file():
                raise DataError(f"no mask {m} for {p}", "pass --masks with the masks/ folder of the data set")
            paths.append(p)
            labels.append([s for s in row["labels"].split(";") if s])
            mask_paths.append(m)
            if limit is not None and len(paths) >= limit:
                break
    if not classes:
        classes = sorted({c for lab in labels for c in lab})
    if not paths:
        raise DataError(f"{manifest} lists no images")
    return paths, labels, classes, mask_paths


def _split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(n - 1, max(1, int(round(val_fraction * n))))
    return np.sort(order[:n_val]), np.sort(order[n_val:])


def localisation_scores(
    bundle: ModelBundle, images: Sequence[np.ndarray], labels: Sequence[Sequence[str]], masks: Sequence[np.ndarray],
    mask_classes: Sequence[str], methods: Sequence[str] = ("fcn", "gradcam", "cam"), *, val_fraction: float = 0.5,
    seed: int = 0, tolerance: float = 15.0, deletion_pairs: int = 16, deletion_steps: int = 16, sanity_images: int = 4,
    batch_size: int = 8, device: Any = None,
) -> dict[str, Any]:
    """Pointing game, mask IoU, PxAP, deletion/insertion AUC and the sanity check per method.

    ``images`` are channel-first (C, H, W) arrays; ``masks[i]`` is (len(mask_classes), H, W).
    """
    missing = sorted({c for lab in labels for c in lab} - set(bundle.classes))
    if missing:
        raise CellclassError(f"the model does not know the data set's classes {missing}",
                             f"use a model trained on these classes (it has: {', '.join(bundle.classes)})")
    val, test = _split(len(images), val_fraction, seed)
    targets = [list(lab) for lab in labels]
    out: dict[str, Any] = {"n_images": len(images), "n_val": int(len(val)), "n_test": int(len(test)),
                           "tolerance_px": tolerance, "methods": {}}
    for method in methods:
        t0 = time.perf_counter()
        try:
            results = explain_batch(bundle, list(images), method, targets=targets, batch_size=batch_size,
                                    device=device, channel_axis=0)
        except CellclassError as err:
            out["methods"][method] = {"error": str(err)}
            continue
        seconds = time.perf_counter() - t0
        pairs: dict[str, list[tuple[int, str, np.ndarray, np.ndarray]]] = {"val": [], "test": []}
        for i, res in enumerate(results):
            part = "val" if i in set(val.tolist()) else "test"
            for name, m in zip(res.class_names, res.maps):
                mask = np.asarray(masks[i][list(mask_classes).index(name)], bool)
                if mask.any():
                    pairs[part].append((i, name, m, mask))
        if not pairs["val"] or not pairs["test"]:
            out["methods"][method] = {"error": "no (image, class) pair with a non-empty mask in one of the splits"}
            continue
        thr, val_iou = E.choose_threshold([p[2] for p in pairs["val"]], [p[3] for p in pairs["val"]])
        test_pairs = pairs["test"]
        scores: dict[str, Any] = {
            "pointing_game": float(np.mean([E.pointing_hit(m, k, tolerance) for _, _, m, k in test_pairs])),
            "iou": float(np.mean([E.mask_iou(m, k, thr) for _, _, m, k in test_pairs])),
            "iou_threshold": thr, "val_iou": val_iou,
            "pxap": E.pxap([p[2] for p in test_pairs], [p[3] for p in test_pairs]),
            "n_pairs_val": len(pairs["val"]), "n_pairs_test": len(test_pairs),
            "seconds_per_image": seconds / max(1, len(images)),
            "effective_resolution_px": list(results[0].effective_resolution),
        }
        if deletion_pairs > 0:
            dels, ins = [], []
            for i, name, m, _ in test_pairs[:deletion_pairs]:
                d, n = E.deletion_insertion(bundle, np.asarray(images[i]), m, bundle.classes.index(name),
                                            deletion_steps, device or "cpu")
                dels.append(d)
                ins.append(n)
            scores["deletion_auc"], scores["insertion_auc"] = float(np.mean(dels)), float(np.mean(ins))
            scores["n_pairs_deletion"] = len(dels)
        if sanity_images > 0:
            idx = [int(i) for i in test[:sanity_images]]
            s = E.sanity_check(bundle, [images[i] for i in idx], method, [targets[i] for i in idx],
                               device=device, channel_axis=0)
            scores["sanity"] = {"spearman_mean": s["spearman_mean"], "passes": s["passes"], "n_images": len(idx)}
        out["methods"][method] = scores
    return out
