"""Issue 17: does ``ood_score`` separate what the model was not trained on, and does
temperature scaling calibrate its probabilities — on data built without ``core.synth``.

A resnet18 (no pretrained weights) is trained through ``core.training.api.fit`` with a
validation split (the OOD threshold and the temperature are fitted on it) on two of
the three classes of ``indep_data``'s 8-bit RGB "phase contrast" cells; the third
class (rods) is held back.  Then, on fresh images:

* AUROC of ``ood_score``, in-distribution test images vs (a) another modality — the
  12-bit granular textures and the 16-bit fibres of ``indep_data``, shown to the model
  as 8-bit RGB — and (b) the held-back class of the same modality;
* the share of each group the flag marks (95 % of in-distribution images should pass);
* ECE (15 bins), Brier and NLL of the test images before and after the temperature.

``python -m benchmarks.bench_trust [--quick] [--out DIR] [--seeds 0,1]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from . import indep_data

FULL = dict(n_train=240, n_test=120, n_ood=60, size=64, epochs=8)
QUICK = dict(n_train=24, n_test=12, n_ood=8, size=32, epochs=1)


def _as_rgb8(img: np.ndarray) -> np.ndarray:
    """Greyscale of any dtype → (H, W, 3) uint8, each image stretched to its own range."""
    a = img.astype(np.float64)
    lo, hi = np.percentile(a, (0.5, 99.5))
    g = (np.clip((a - lo) / max(hi - lo, 1e-9), 0, 1) * 255).round().astype(np.uint8)
    return np.repeat(g[..., None], 3, -1)


def _cells(n: int, size: int, seed: int, keep: tuple[int, ...]) -> tuple[list[np.ndarray], list[int]]:
    imgs, labels, _ = indep_data.make("rgb8-cells", n * 3 // len(keep) + 3, size, seed)
    pairs = [(i, lab) for i, lab in zip(imgs, labels) if lab in keep][:n]
    return [p[0] for p in pairs], [keep.index(p[1]) for p in pairs]


def _records(bundle, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from napari_cellclass.core.inference.predict import predict_records

    recs = list(predict_records(bundle, images, device="cpu", channel_axis=-1, batch_size=32))
    return (np.array([r.probs for r in recs]), np.array([r.ood_score for r in recs], np.float64),
            np.array([r.ood for r in recs], bool))


def run_seed(cfg: dict, seed: int) -> dict:
    from sklearn.metrics import roc_auc_score

    from napari_cellclass.core.evaluation import calibration
    from napari_cellclass.core.training.api import fit

    size = cfg["size"]
    x_tr, y_tr = _cells(cfg["n_train"], size, 100 + seed, (0, 1))
    items = [(img, [lab], f"tr{i}") for i, (img, lab) in enumerate(zip(x_tr, y_tr))]
    t0 = time.perf_counter()
    bundle = fit("resnet18", items, classes=["small-round", "large-round"], channel_axis=-1, input_size=(size, size),
                 pretrained=False, device="cpu", epochs=cfg["epochs"], batch_size=16, val_fraction=0.25, seed=seed)
    train_s = time.perf_counter() - t0
    x_te, y_te = _cells(cfg["n_test"], size, 200 + seed, (0, 1))
    held, _ = _cells(cfg["n_ood"], size, 300 + seed, (2,))
    other = [_as_rgb8(im) for name in ("u12-texture", "u16-fibres")
             for im in indep_data.make(name, cfg["n_ood"] // 2, size, 400 + seed)[0]]
    p_te, s_te, f_te = _records(bundle, x_te)
    p_held, s_held, f_held = _records(bundle, held)
    p_other, s_other, f_other = _records(bundle, other)

    def auroc(s_out: np.ndarray, s_in: np.ndarray = s_te) -> float:
        return float(roc_auc_score(np.r_[np.zeros(len(s_in)), np.ones(len(s_out))], np.r_[s_in, s_out]))

    y = np.asarray(y_te)
    t = bundle.temperature
    raw = calibration.scaled_probabilities(p_te, 1.0 / t, bundle.output) if t != 1.0 else p_te
    return {
        "seed": seed, "train_s": round(train_s, 1), "temperature": t,
        "accuracy": float((p_te.argmax(1) == y).mean()),
        "auroc_other_modality": auroc(s_other), "auroc_held_back_class": auroc(s_held),
        # the baseline every classifier has for free: 1 - the top-class probability (max-softmax)
        "msp_auroc_other_modality": auroc(1 - p_other.max(1), 1 - p_te.max(1)),
        "msp_auroc_held_back_class": auroc(1 - p_held.max(1), 1 - p_te.max(1)),
        "flagged_in_distribution": float(f_te.mean()), "flagged_other_modality": float(f_other.mean()),
        "flagged_held_back_class": float(f_held.mean()),
        "ece_before": calibration.ece(raw, y), "ece_after": calibration.ece(p_te, y),
        "brier_before": calibration.brier(raw, y), "brier_after": calibration.brier(p_te, y),
        "nll_before": calibration.nll(np.log(np.clip(raw, 1e-12, 1)), y, "softmax"),
        "nll_after": calibration.nll(np.log(np.clip(p_te, 1e-12, 1)), y, "softmax"),
        "fitted": bundle.provenance["training"].get("trust"),
    }


def to_markdown(rows: list[dict], cfg: dict) -> str:
    keys = ("accuracy", "auroc_other_modality", "auroc_held_back_class", "msp_auroc_other_modality",
            "msp_auroc_held_back_class", "flagged_in_distribution",
            "flagged_other_modality", "flagged_held_back_class", "temperature", "ece_before", "ece_after",
            "brier_before", "brier_after", "nll_before", "nll_after")
    lines = [f"# bench_trust: {cfg}", "", "| seed | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for r in rows:
        lines.append(f"| {r['seed']} | " + " | ".join(f"{r[k]:.3f}" for k in keys) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="seconds-long smoke run (the test suite's)")
    ap.add_argument("--out", type=Path, default=None, help="folder for bench_trust.json and .md")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds")
    args = ap.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    rows = [run_seed(cfg, int(s)) for s in args.seeds.split(",")]
    md = to_markdown(rows, cfg)
    print(md)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_trust.json").write_text(json.dumps({"config": cfg, "rows": rows}, indent=2, default=str))
        (args.out / "bench_trust.md").write_text(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
