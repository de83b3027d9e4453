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

``--part calsplit`` (``_cal_split``): the same calibration task scored on a large test set
(with its ECE noise floor), the temperature fitted on fresh images that did not choose
the epoch, temperature + class bias, and oracle temperatures as bounds.

``python -m benchmarks.bench_trust [--quick] [--out DIR] [--seeds 0,1] [--part calsplit]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from napari_cellclass.core.models import ood

from . import _cal_split, indep_data

FULL = {"n_train": 240, "n_test": 120, "n_ood": 60, "size": 64, "epochs": 8, "label_noise": 0.2, "arch_run": 1,
        "n_fresh": 80, "n_big_test": 2000}
QUICK = {"n_train": 24, "n_test": 12, "n_ood": 9, "size": 32, "epochs": 1, "label_noise": 0.2, "arch_run": 1,
         "n_fresh": 16, "n_big_test": 24}


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


def _auroc(s_out: np.ndarray, s_in: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.r_[np.zeros(len(s_in)), np.ones(len(s_out))], np.r_[s_in, s_out]))


def _other_modality(n: int, size: int, seed: int) -> list[np.ndarray]:
    """12-bit granular textures, 16-bit fibres and 3-channel float NLO images, as 8-bit RGB."""
    per = max(1, n // 3)
    grey = [_as_rgb8(im) for name in ("u12-texture", "u16-fibres") for im in indep_data.make(name, per, size, seed)[0]]
    nlo = [np.stack([_as_rgb8(c)[..., 0] for c in im], -1) for im in indep_data.make("f32-nlo-3ch", per, size, seed)[0]]
    return grey + nlo


def _train(cfg: dict, x: list, y: list, seed: int, val_fraction: float):
    from napari_cellclass.core.training.api import fit

    items = [(img, [lab], f"tr{i}") for i, (img, lab) in enumerate(zip(x, y))]
    return fit("resnet18", items, classes=["small-round", "large-round"], channel_axis=-1,
               input_size=(cfg["size"], cfg["size"]), pretrained=False, device="cpu", epochs=cfg["epochs"],
               batch_size=16, val_fraction=val_fraction, seed=seed)


def ood_seed(cfg: dict, seed: int) -> dict:
    """Every candidate score and the implemented one, on one network trained on two classes."""
    from . import _ood_candidates as cand

    size = cfg["size"]
    x_tr, y_tr = _cells(cfg["n_train"], size, 100 + seed, (0, 1))
    t0 = time.perf_counter()
    bundle = _train(cfg, x_tr, y_tr, seed, 0.25)
    train_s = time.perf_counter() - t0
    x_cal, _ = _cells(cfg["n_ood"], size, 500 + seed, (0, 1))
    x_te, y_te = _cells(cfg["n_test"], size, 200 + seed, (0, 1))
    sets = {"test": x_te, "other_modality": _other_modality(cfg["n_ood"], size, 400 + seed),
            "held_back_class": _cells(cfg["n_ood"], size, 300 + seed, (2,))[0]}
    parts = ood.default_parts(bundle.network)
    feats = {k: cand.extract(bundle, v, parts) for k, v in {"train": x_tr, "cal": x_cal, **sets}.items()}
    scores = cand.candidates(feats["train"], np.asarray(y_tr), 2, feats["cal"], {k: feats[k] for k in sets})
    recs = {k: _records(bundle, v) for k, v in sets.items()}
    scores["implemented (model file, predict_records)"] = {k: r[1] for k, r in recs.items()}
    table = {name: {g: _auroc(s[g], s["test"]) for g in ("other_modality", "held_back_class")} for name, s in scores.items()}
    return {"seed": seed, "train_s": round(train_s, 1), "accuracy": float((recs["test"][0].argmax(1) == np.asarray(y_te)).mean()),
            "candidates": table, **{f"flagged_{k}": float(r[2].mean()) for k, r in recs.items()},
            "fitted": bundle.provenance["training"].get("trust")}


def _noisy(y: list[int], rate: float, rng: np.random.Generator) -> list[int]:
    return [1 - v if rng.random() < rate else v for v in y]


def calibration_seed(cfg: dict, seed: int) -> dict:
    """The harder variant: a share of the labels flipped (annotators who disagree), so no
    classifier is right on all test images; ECE / NLL / Brier before and after the
    temperature, and the same task trained as --arch trains (no validation split)."""
    from napari_cellclass.core.evaluation import calibration

    rng = np.random.default_rng(900 + seed)
    size, rate = cfg["size"], cfg["label_noise"]
    x_tr, y_tr = _cells(cfg["n_train"], size, 600 + seed, (0, 1))
    x_te, y_te = _cells(cfg["n_test"], size, 700 + seed, (0, 1))
    y_tr, y = _noisy(y_tr, rate, rng), np.asarray(_noisy(y_te, rate, rng))
    out: dict = {"seed": seed, "label_noise": rate}
    for tag, vf in (("val", 0.25), ("arch", 0.0))[: 2 if cfg.get("arch_run", 1) else 1]:
        bundle = _train(cfg, x_tr, y_tr, seed, vf)
        p, _, f = _records(bundle, x_te)
        if tag == "arch":  # the threshold the first trust format took: in-sample training distances
            out["arch_flagged_test_in_sample_threshold"] = _in_sample_flag_rate(bundle, x_tr, y_tr, x_te)
        t = bundle.temperature
        raw = calibration.scaled_probabilities(p, 1.0 / t, bundle.output) if t != 1.0 else p
        out[tag] = {"accuracy": float((p.argmax(1) == y).mean()), "temperature": t, "flagged_test": float(f.mean()),
                    "ece_before": calibration.ece(raw, y), "ece_after": calibration.ece(p, y),
                    "brier_before": calibration.brier(raw, y), "brier_after": calibration.brier(p, y),
                    "nll_before": calibration.nll(np.log(np.clip(raw, 1e-12, 1)), y, "softmax"),
                    "nll_after": calibration.nll(np.log(np.clip(p, 1e-12, 1)), y, "softmax"),
                    "ece_floor": _ece_floor(p, rng)}
    return out


def _in_sample_flag_rate(bundle, x_tr: list, y_tr: list, x_te: list) -> float:
    from . import _ood_candidates as cand

    parts = bundle.ood.part_names
    f_tr, f_te = cand.extract(bundle, x_tr, parts)[1], cand.extract(bundle, x_te, parts)[1]
    stats = ood.fit_stats(f_tr, np.asarray(y_tr), 2, f_tr)
    return float(stats.flags(stats.score(f_te)).mean())


def _ece_floor(p: np.ndarray, rng: np.random.Generator, draws: int = 200) -> float:
    """Mean ECE of a *perfectly* calibrated model with these confidences on this many
    images (each top class right with probability its confidence): the noise floor
    below which a measured ECE says nothing."""
    from napari_cellclass.core.evaluation import calibration

    conf = p.max(1)
    vals = []
    for _ in range(draws):
        right = rng.random(len(conf)) < conf
        # two classes: when the top class is wrong the label is the other one
        vals.append(calibration.ece(p, np.where(right, p.argmax(1), 1 - p.argmax(1))))
    return float(np.mean(vals))


def run_seed(cfg: dict, seed: int, part: str = "all") -> dict:
    return {**({"ood": ood_seed(cfg, seed)} if part in ("all", "ood") else {}),
            **({"calibration": calibration_seed(cfg, seed)} if part in ("all", "calibration") else {}),
            **({"calsplit": _cal_split.cal_split_seed(cfg, seed)} if part == "calsplit" else {})}


def _ood_markdown(rows: list[dict]) -> list[str]:
    seeds = [r["seed"] for r in rows]
    lines = ["## OOD: AUROC of each candidate score, per seed (other modality / held-back class)", "",
             "| score | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |", "|---" * (len(seeds) + 2) + "|"]
    for name in rows[0]["candidates"]:
        vals = [r["candidates"][name] for r in rows]
        cells = [f"{v['other_modality']:.3f} / {v['held_back_class']:.3f}" for v in vals]
        mean = f"{np.mean([v['other_modality'] for v in vals]):.3f} / {np.mean([v['held_back_class'] for v in vals]):.3f}"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean} |")
    lines += ["", "| seed | accuracy | flagged test | flagged other modality | flagged held-back class |", "|---|---|---|---|---|"]
    for o in rows:
        lines.append(f"| {o['seed']} | {o['accuracy']:.3f} | {o['flagged_test']:.3f} | {o['flagged_other_modality']:.3f} | "
                     f"{o['flagged_held_back_class']:.3f} |")
    return lines + [""]


def _calibration_markdown(rows: list[dict], noise: float) -> list[str]:
    keys = ("accuracy", "temperature", "flagged_test", "ece_before", "ece_after", "ece_floor", "brier_before",
            "brier_after", "nll_before", "nll_after")
    lines = [f"## Calibration, labels {noise:.0%} flipped (val: 25 % validation split; arch: none, as --arch)", "",
             "| seed | split | " + " | ".join(keys) + " |", "|---" * (len(keys) + 2) + "|"]
    for r in rows:
        for tag in ("val", "arch"):
            if tag in r:
                lines.append(f"| {r['seed']} | {tag} | " + " | ".join(f"{r[tag].get(k, float('nan')):.3f}" for k in keys) + " |")
    if all("arch" in r for r in rows):
        lines += ["", "arch, share of test images flagged with the first format's threshold (in-sample training distances): "
              + ", ".join(f"seed {r['seed']} {r['arch_flagged_test_in_sample_threshold']:.3f}" for r in rows)]
    return lines + [""]


def to_markdown(rows: list[dict], cfg: dict) -> str:
    lines = [f"# bench_trust: {cfg}", ""]
    if "ood" in rows[0]:
        lines += _ood_markdown([r["ood"] for r in rows])
    if "calibration" in rows[0]:
        lines += _calibration_markdown([r["calibration"] for r in rows], cfg["label_noise"])
    if "calsplit" in rows[0]:
        lines += _cal_split.to_markdown([r["calsplit"] for r in rows])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="seconds-long smoke run (the test suite's)")
    ap.add_argument("--out", type=Path, default=None, help="folder for bench_trust.json and .md")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds")
    ap.add_argument("--part", choices=("all", "ood", "calibration", "calsplit"), default="all", help="run one half only")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override one configuration value, e.g. --set size=48 --set label_noise=0.1")
    args = ap.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    for kv in args.set:
        key, _, value = kv.partition("=")
        if key not in cfg:
            ap.error(f"--set {kv}: no configuration value {key!r} (one of {', '.join(cfg)})")
        cfg[key] = type(cfg[key])(value)
    rows = []
    for seed in args.seeds.split(","):  # written after every seed: a long run's first seeds survive a stop
        rows.append(run_seed(cfg, int(seed), args.part))
        md = to_markdown(rows, cfg)
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "bench_trust.json").write_text(json.dumps({"config": cfg, "rows": rows}, indent=2, default=str))
            (args.out / "bench_trust.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
