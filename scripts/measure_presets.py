#!/usr/bin/env python
"""Train every preset on its study's synthetic data and score it on a held-out set.

For each preset: a training set and a separate held-out set (another seed, so no
image is shared) from ``core.synth``; training with the preset's recipe, reduced
to what two CPU cores finish in minutes (the table says what was reduced);
macro-F1 (single-label) or mean per-class Dice at the model's chosen thresholds
(multi-label) on the held-out set, computed with ``sklearn.metrics`` directly.

Plus the global-intensity check on synthetic phase-contrast cell lines: logistic
regression on per-channel mean / std / percentiles versus a from-scratch CNN. The
generator gives every class the same brightness distribution, so the baseline
should sit near chance while the CNN, which sees morphology, should not.

These are *pipeline* measurements on synthetic data, not the papers' numbers: no
ImageNet weights can be downloaded here, so every backbone starts from random
weights (pretrained=False), inputs are smaller and epochs fewer.

    OMP_NUM_THREADS=2 python scripts/measure_presets.py            # all, ~20-25 min on 2 cores
    python scripts/measure_presets.py --only scaffoldnet-brightfield --quick
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402

OUT = ROOT / "docs" / "measurements"


@dataclass
class Plan:
    task: str
    n_train: int
    n_test: int
    synth_size: tuple[int, int]
    input_size: tuple[int, int]
    epochs: int
    batch_size: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    reduced: str = ""


PLANS: dict[str, Plan] = {
    "cell-line-authentication": Plan(
        "cell-line", 64, 200, (192, 256), (75, 75), 2, 16,
        reduced="4 parental classes (synth), 64 training images, 75 px instead of 299, 2 epochs instead of 30, "
                "no ImageNet weights, no 10-fold CV"),
    "scaffoldnet-brightfield": Plan(
        "brightfield", 400, 200, (128, 128), (64, 64), 8, 32,
        reduced="64 px instead of 128 (8 epochs as the paper)"),
    "efficientnetv2-fluorescence": Plan(
        "actin", 240, 200, (128, 128), (64, 64), 5, 16, {"freeze_fraction": 0.0},
        reduced="64 px instead of 224, 5 epochs instead of 70, no ImageNet weights, so freeze_fraction 0 "
                "(freezing random layers would keep them random)"),
    "senescence-ensemble": Plan(
        "senescence", 32, 100, (125, 150), (75, 75), 1, 16,
        reduced="32 training / 100 test images, 75 px instead of 224, 1 epoch per stage instead of <= 200, "
                "no ImageNet weights (7 random backbones)"),
    "senescence-ensemble:frozen": Plan(
        "senescence", 32, 100, (125, 150), (75, 75), 1, 16,
        reduced="as senescence-ensemble; head-only training on random (not ImageNet) backbones"),
    "senescence-ensemble:scratch-cnn": Plan(
        "senescence", 300, 200, (125, 150), (125, 150), 30, 20,
        reduced="half the paper's 250x300 input; at most 30 epochs instead of 200 (early stopping 20 kept)"),
    "senescence-ensemble:hybrid-svm": Plan(
        "senescence", 64, 100, (125, 150), (75, 75), 0, 16,
        reduced="64 training / 100 test images, 75 px, random (not ImageNet) backbones as feature extractors"),
    "protein-localization-cnn": Plan(
        "protein", 300, 200, (128, 128), (128, 128), 6, 32,
        reduced="synthetic 13 classes at 128 px instead of 256, 6 epochs instead of <= 100, 300 training images instead of 16,000"),
    "protein-localization-fcn": Plan(
        "protein", 300, 200, (128, 128), (128, 128), 6, 32,
        reduced="as protein-localization-cnn"),
}
# Variants beside the recipes: what the two presets that stay near chance above need when
# they start from random weights (more epochs; a from-scratch learning rate).
VARIANTS: dict[str, Plan] = {
    "scaffoldnet-brightfield@30-epochs": Plan(
        "brightfield", 400, 200, (128, 128), (64, 64), 30, 32,
        reduced="variant: 30 epochs instead of the paper's 8 (64 px)"),
    "efficientnetv2-fluorescence@scratch-lr": Plan(
        "actin", 240, 200, (128, 128), (64, 64), 15, 16, {"freeze_fraction": 0.0, "lr": 1e-3},
        reduced="variant: lr 1e-3 (the recipe's 5e-5 is a fine-tuning rate for ImageNet weights), 15 epochs, 64 px"),
}
SAME_AS = {"senescence-ensemble:fully-trained": "senescence-ensemble"}  # identical recipe: measured once
CHANNEL_AXIS = {"senescence": 0, "protein": 0}


def _data(task: str, n: int, seed: int, size: tuple[int, int]):
    from napari_cellclass.core.synth import generate

    return generate(task, n, seed=seed, size=size)


def _score(bundle, s, axis) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    from napari_cellclass.core.inference.predict import predict

    t0 = time.perf_counter()
    probs = predict(bundle, s.images, batch_size=32, device="cpu", channel_axis=axis)
    pred_s = time.perf_counter() - t0
    if s.multilabel:
        y = np.zeros((len(s.labels), len(s.classes)), int)
        for i, lab in enumerate(s.labels):
            y[i, lab] = 1
        p = (probs >= np.asarray(bundle.class_thresholds())[None]).astype(int)
        dice = f1_score(y, p, average=None, zero_division=0)  # per-class F1 on indicators = Dice
        present = y.sum(0) > 0
        return {"mean_dice": float(dice[present].mean()), "exact_match": float((y == p).all(1).mean()),
                "predict_ms_per_image": 1000 * pred_s / len(s.images)}
    y = np.array([lab[0] for lab in s.labels])
    yp = probs.argmax(1)
    return {"macro_f1": float(f1_score(y, yp, average="macro")), "accuracy": float(accuracy_score(y, yp)),
            "predict_ms_per_image": 1000 * pred_s / len(s.images)}


def _train(name: str, plan: Plan, train_set, axis, seed: int):
    from napari_cellclass.core.training.api import train

    items = [(im, lab, f"{plan.task}{i}") for i, (im, lab) in enumerate(zip(train_set.images, train_set.labels))]
    kw = dict(classes=train_set.classes, channel_axis=axis, input_size=plan.input_size, pretrained=False,
              device="cpu", seed=seed, **plan.extra)
    if plan.batch_size:
        kw["batch_size"] = plan.batch_size
    runner = train
    if name.endswith("hybrid-svm"):
        try:
            from napari_cellclass.core.training.hybrid import train_hybrid  # branch metrics: PCA + SVM heads
        except ImportError:
            return None, "core.hybrid is not available in this checkout"
        runner = train_hybrid
    else:
        kw["epochs"] = plan.epochs
    gen = runner(name, items, **kw)
    while True:
        try:
            ev = next(gen)
        except StopIteration as done:
            return done.value, ""
        if ev.kind in ("epoch", "stage"):
            print(f"  {name}: {ev.line() if ev.kind == 'epoch' else ev.message}", file=sys.stderr, flush=True)


def measure_preset(name: str, plan: Plan, seed: int, quick: bool) -> dict[str, Any]:
    if quick:
        plan = Plan(plan.task, min(plan.n_train, 24), min(plan.n_test, 20), plan.synth_size, plan.input_size,
                    min(plan.epochs, 1), plan.batch_size, plan.extra, plan.reduced + " [quick]")
    axis = CHANNEL_AXIS.get(plan.task, "auto")
    t0 = time.perf_counter()
    tr = _data(plan.task, plan.n_train, seed, plan.synth_size)
    te = _data(plan.task, plan.n_test, seed + 1000, plan.synth_size)
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result, why = _train(name, plan, tr, axis, seed)
    train_s = time.perf_counter() - t0
    row: dict[str, Any] = {"preset": name, "task": plan.task, "n_train": plan.n_train, "n_test": plan.n_test,
                           "input_size": list(plan.input_size), "reduced": plan.reduced, "synth_s": round(gen_s, 1)}
    if result is None:
        row["skipped"] = why
        return row
    b = result.bundle
    training = b.provenance.get("training", {})
    row.update({"epochs_run": training.get("epochs_run"), "best_epoch": training.get("best_epoch"),
                "stopped_early": result.stopped_early if hasattr(result, "stopped_early") else None,
                "train_s": round(train_s, 1)})
    row.update({k: round(v, 4) for k, v in _score(b, te, axis).items()})
    row["chance"] = round(_chance(te), 4)
    return row


def _chance(s) -> float:
    """Macro-F1 of always predicting the majority class, or mean Dice of predicting every class present."""
    if s.multilabel:
        k = len(s.classes)
        y = np.zeros((len(s.labels), k), int)
        for i, lab in enumerate(s.labels):
            y[i, lab] = 1
        prev = y.mean(0)
        present = prev > 0
        return float((2 * prev[present] / (1 + prev[present])).mean())  # Dice of "always present"
    return 1.0 / len(s.classes)  # expected accuracy of guessing; macro-F1 of a uniform guess is about the same


# ------------------------------------------------------------------ global-intensity baseline vs CNN
def intensity_features(img: np.ndarray) -> np.ndarray:
    """Per-channel mean, std and percentiles (1, 5, 25, 50, 75, 95, 99) of one image."""
    x = img.astype(np.float32)
    x = x.reshape(-1, x.shape[-1]) if x.ndim == 3 else x.reshape(-1, 1)  # (pixels, channels), RGB last
    pct = np.percentile(x, [1, 5, 25, 50, 75, 95, 99], axis=0)
    return np.concatenate([x.mean(0), x.std(0), pct.reshape(-1)])


def baseline_vs_cnn(seed: int, quick: bool) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from napari_cellclass.core.training.api import train

    n_train, n_test, epochs = (40, 20, 1) if quick else (400, 200, 8)
    # 96 px keeps a from-scratch resnet18 affordable on two cores; batch 16 gives it 200 steps
    size, inp = (192, 256), (96, 96)
    tr, te = _data("cell-line", n_train, seed, size), _data("cell-line", n_test, seed + 1000, size)
    ytr = np.array([lab[0] for lab in tr.labels])
    yte = np.array([lab[0] for lab in te.labels])
    t0 = time.perf_counter()
    lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    lr.fit(np.stack([intensity_features(im) for im in tr.images]), ytr)
    f1_lr = f1_score(yte, lr.predict(np.stack([intensity_features(im) for im in te.images])), average="macro")
    lr_s = time.perf_counter() - t0
    items = [(im, lab, f"c{i}") for i, (im, lab) in enumerate(zip(tr.images, tr.labels))]
    t0 = time.perf_counter()
    gen = train("resnet18", items, classes=tr.classes, input_size=inp, pretrained=False, device="cpu", seed=seed,
                epochs=epochs, batch_size=16, lr=1e-3, val_fraction=0.1,
                augment={"hflip": True, "vflip": True, "rot90": True})
    while True:
        try:
            ev = next(gen)
        except StopIteration as done:
            res = done.value
            break
        if ev.kind == "epoch":
            print(f"  cnn: {ev.line()}", file=sys.stderr, flush=True)
    cnn_s = time.perf_counter() - t0
    score = _score(res.bundle, te, "auto")
    return {"task": "cell-line (4 parental lines, synthetic phase contrast)", "n_train": n_train, "n_test": n_test,
            "baseline": {"model": "logistic regression on per-channel mean/std/percentiles (27 features)",
                         "macro_f1": round(float(f1_lr), 4), "time_s": round(lr_s, 1)},
            "cnn": {"model": f"resnet18 from scratch, {inp[0]} px, {res.bundle.provenance['training']['epochs_run']} epochs, "
                             "flips + rot90", "macro_f1": round(score["macro_f1"], 4), "time_s": round(cnn_s, 1)},
            "chance": 0.25}


# ------------------------------------------------------------------ report
def markdown(rows: list[dict[str, Any]], base: dict[str, Any] | None, meta: dict[str, Any]) -> str:
    lines = [
        "# Preset measurements on synthetic data (CPU)",
        "",
        f"Generated by `scripts/measure_presets.py` on {meta['date']} ({meta['threads']} CPU threads, "
        f"torch {meta['torch']}, seed {meta['seed']}; total {meta['total_min']:.1f} min).",
        "",
        "Every preset trains with its study's recipe on synthetic images from `core.synth` and is scored on a",
        "separate held-out set drawn with another seed. **These are pipeline checks, not the papers' results**:",
        "no ImageNet weights can be downloaded here, so every backbone starts from random weights, and inputs,",
        "image counts and epochs are reduced so that two CPU cores finish in minutes (column *reduced*).",
        "Score: macro-F1 for single-label presets, mean per-class Dice at the model's chosen thresholds for",
        "the multi-label ones (sklearn.metrics); *chance*: 1/K for single-label, the Dice of predicting every",
        "compartment for multi-label. Rows named `preset@variant` change the recipe as their *reduced* cell says.",
        "",
        "| preset | task | train / test | input | epochs run | score | chance | train time | reduced |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['preset']} | {r['task']} | — | — | — | skipped: {r['skipped']} | | | |")
            continue
        if "same_as" in r:
            lines.append(f"| {r['preset']} | {r['task']} | | | | same recipe as {r['same_as']} (measured once) | | | |")
            continue
        score = f"Dice {r['mean_dice']:.3f}" if "mean_dice" in r else f"F1 {r['macro_f1']:.3f}"
        epochs = f"{r['epochs_run']}" + (" (early stop)" if r.get("stopped_early") else "")
        lines.append(f"| {r['preset']} | {r['task']} | {r['n_train']} / {r['n_test']} | {r['input_size'][0]}x{r['input_size'][1]} "
                     f"| {epochs} | {score} | {r['chance']:.3f} | {r['train_s']:.0f} s | {r['reduced']} |")
    if base:
        lines += [
            "",
            "## Global intensity is not enough: baseline vs CNN",
            "",
            f"Task: {base['task']}, {base['n_train']} training / {base['n_test']} held-out images, chance 0.25.",
            "The generator draws brightness, contrast, illumination and colour cast from one distribution shared",
            "by all classes, so only morphology separates them.",
            "",
            "| model | macro-F1 | time |",
            "|---|---|---|",
            f"| {base['baseline']['model']} | {base['baseline']['macro_f1']:.3f} | {base['baseline']['time_s']:.0f} s |",
            f"| {base['cnn']['model']} | {base['cnn']['macro_f1']:.3f} | {base['cnn']['time_s']:.0f} s |",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import datetime

    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", default=None, help="preset names (default: all) ; 'baseline' for the baseline only")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the script, numbers mean nothing")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--append", action="store_true", help="add to the rows already in OUT/presets.json")
    p.add_argument("--variants", action="store_true", help="measure the variants (see VARIANTS) instead")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    from napari_cellclass.core.presets.studies import PRESETS

    # cheap first, the big backbones last: an interrupted run still reports most rows
    heavy = [n for n in PRESETS if n.startswith("senescence-ensemble") and n != "senescence-ensemble:scratch-cnn"]
    light = [n for n in PRESETS if n not in heavy and n != "cell-line-authentication"]
    names = args.only if args.only is not None else ["baseline", *light, "cell-line-authentication", *heavy]
    args.out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    if args.variants and args.only is None:
        names = list(VARIANTS)
    rows: list[dict[str, Any]] = []
    base = None
    if args.append and (args.out / "presets.json").is_file():
        old = json.loads((args.out / "presets.json").read_text())
        rows, base = [r for r in old["presets"] if r["preset"] not in names], old.get("baseline")
        t_all -= 60 * old["meta"].get("total_min", 0.0)  # the total covers both runs
    meta = {"date": datetime.date.today().isoformat(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "seed": args.seed, "quick": args.quick}

    def flush() -> None:
        meta["total_min"] = (time.perf_counter() - t_all) / 60
        from napari_cellclass.core.atomicfile import write_atomic

        write_atomic(args.out / "presets.json", json.dumps({"meta": meta, "presets": rows, "baseline": base}, indent=1).encode())
        write_atomic(args.out / "presets.md", markdown(rows, base, meta).encode())

    for name in names:
        print(f"== {name}", file=sys.stderr, flush=True)
        if name == "baseline":
            base = baseline_vs_cnn(args.seed, args.quick)
        elif name in SAME_AS:
            rows.append({"preset": name, "task": PLANS[SAME_AS[name]].task, "same_as": SAME_AS[name]})
        elif name in VARIANTS:
            row = measure_preset(name.split("@")[0], VARIANTS[name], args.seed, args.quick)
            row["preset"] = name
            rows.append(row)
            print(f"   {rows[-1]}", file=sys.stderr, flush=True)
        else:
            rows.append(measure_preset(name, PLANS[name], args.seed, args.quick))
            print(f"   {rows[-1]}", file=sys.stderr, flush=True)
        flush()
    print(markdown(rows, base, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
