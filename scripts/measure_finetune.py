#!/usr/bin/env python
"""How many labels and seconds does the fine-tune panel need to reach a useful accuracy?

Runs exactly what the panel's Fine-tune button runs — annotations in an
AnnotationStore (image-level labels, as keys 1–9 make them) → training_samples →
core.finetune.start_model → core.finetune.finetune_steps — on synthetic images from
core.synth, and scores the tuned model on a separate held-out synthetic set.

    python scripts/measure_finetune.py --out docs/measurements/finetune.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402


def make_store(folder: Path, task: str, per_class: int, size: int, seed: int, classes: list[str] | None = None):
    """An annotation file with ``per_class`` labelled synthetic images per class."""
    from napari_cellclass.core.annotations import AnnotationStore
    from napari_cellclass.core.synth import TASKS, generate

    classes = classes or TASKS[task].classes
    s = generate(task, per_class * len(classes) * 3, seed=seed, size=(size, size), classes=classes)
    store = AnnotationStore.open(folder / "annotations.json")
    for c in classes:
        store.add_class(c)
    taken = {c: 0 for c in range(len(classes))}
    for i, (img, lab) in enumerate(zip(s.images, s.labels)):
        c = lab[0]
        if taken[c] >= per_class:
            continue
        taken[c] += 1
        key = store.add_image(img, name=f"img{i}", rgb=img.ndim == 3 and img.shape[-1] == 3)
        store.label_image(key, 0, classes[c])
        if all(v >= per_class for v in taken.values()):
            break
    return store


def held_out(task: str, n: int, size: int, seed: int, classes: list[str] | None = None):
    from napari_cellclass.core.io.images import get_plane, guess_layout
    from napari_cellclass.core.synth import generate

    s = generate(task, n, seed=seed, size=(size, size), classes=classes)
    items = []
    for i, (img, lab) in enumerate(zip(s.images, s.labels)):
        layout = guess_layout(img.shape, "auto", rgb=img.ndim == 3 and img.shape[-1] == 3)
        items.append((get_plane(img, layout, 0, native=True), list(lab), f"test{i}"))
    return items


def run_one(task: str, start: str, per_class: int, size: int, epochs: int, lr: float, seed: int,
            test_items, device: str = "cpu", classes: list[str] | None = None, freeze: float = 0.0,
            input_size: int = 0) -> dict:
    from napari_cellclass.builtin import default_model_path
    from napari_cellclass.core.annotations import training_samples
    from napari_cellclass.core.models.modelfile import load_model
    from napari_cellclass.core.training.finetune import (FineTuneOptions, evaluate_items, finetune_steps, in_chans_of, start_model)

    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(Path(tmp), task, per_class, size, seed=1000 + seed, classes=classes)
        kind, name = ("model", None) if start == "default" else ("scratch", start)
        # the panel's session has its model loaded already: loading is not part of a fine-tune
        bundle = load_model(default_model_path()) if kind == "model" else None
        t0 = time.perf_counter()
        items = [x.as_tuple() for x in training_samples(store)]
        model = start_model(kind, name, store.class_names, in_chans_of(items), bundle=bundle,
                            input_size=(input_size, input_size) if input_size else None, seed=seed)
        opts = FineTuneOptions(epochs=epochs, lr=lr, batch_size=8, val_fraction=0.25, seed=seed, freeze_fraction=freeze)
        gen = finetune_steps(model, items, store.class_names, opts, device=device, annotations=store.path)
        while True:
            try:
                next(gen)
            except StopIteration as done:
                outcome = done.value
                break
        seconds = time.perf_counter() - t0
    before = evaluate_items(outcome.start, test_items, device)["accuracy"]
    after = evaluate_items(outcome.bundle, test_items, device)["accuracy"]
    return {"task": task, "start": start, "per_class": per_class, "labels": len(items), "epochs": epochs,
            "seed": seed, "seconds": round(seconds, 1), "test_before": before, "test_after": after,
            "val_before": outcome.before["accuracy"], "val_after": outcome.after["accuracy"],
            "classes": store.class_names}


#: what each start trains like: the panel's options for it
CONFIGS = {
    "default": dict(start="default", freeze=0.9, lr=3e-3, epochs=3, input_size=0,
                    what="built-in default (EfficientNet-Lite0), new head, backbone 90 % frozen, 3 epochs, lr 3e-3, 160 px input"),
    "resnet18": dict(start="resnet18", freeze=0.0, lr=1e-3, epochs=15, input_size=64,
                     what="resnet18 from scratch, 15 epochs, lr 1e-3, 64 px input"),
    "senescence_cnn": dict(start="senescence_cnn", freeze=0.0, lr=3e-3, epochs=30, input_size=64,
                           what="senescence_cnn (6/12/24 filters) from scratch, 30 epochs, lr 3e-3, 64 px input"),
}


def write_markdown(rows: list[dict], path: Path, args: argparse.Namespace) -> None:
    import platform

    import torch

    lines = [
        "# Fine-tuning from annotations: labels and seconds to a useful accuracy",
        "",
        "Measured with `scripts/measure_finetune.py` (the fine-tune panel's own calls: annotations in an",
        "`AnnotationStore` → `training_samples` → `core.finetune.start_model` → `core.finetune.finetune_steps`).",
        f"Task: synthetic phase-contrast cell lines (`core.synth` task `{args.task}`, classes "
        f"{args.classes or 'all'}) at {args.size}x{args.size} px; image-level labels as keys 1–9 make them;",
        "a quarter of the labels is held out for validation (keep-best), flips/rot90 augmentation, batch 8.",
        f"Accuracy on {args.test} separate held-out synthetic images (chance: {1 / max(1, len(rows[0]['classes'])):.2f}),",
        f"mean over seeds {args.seeds} (seed = the labelled images drawn and the training seed).",
        f"Seconds: wall clock of collecting samples + training + validation, on this machine's CPU "
        f"({platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads), "
        "shared with other jobs while measured — read them as an upper bound (range over the seeds in brackets).",
        "",
        "*Before* is the starting model with a new, untrained 2-class head (the annotation classes differ from",
        "the model's), so it sits near chance (a random head on good features can land a little above it);",
        "*after* is the model the panel offers to keep",
        "(the best epoch on the validation labels). The GUI test (`tests/test_widgets_finetune.py`) runs the",
        "first configuration for 2 epochs on 24 labels.",
        "",
    ]
    for name in dict.fromkeys(r["config"] for r in rows):
        cfg = CONFIGS[name]
        mine = [r for r in rows if r["config"] == name]
        lines += [f"## {cfg['what']}", "", "| labels per class | labels | accuracy before | accuracy after | seconds |",
                  "| ---: | ---: | ---: | ---: | ---: |"]
        reached = None
        for n in sorted({r["per_class"] for r in mine}):
            rs = [r for r in mine if r["per_class"] == n]
            b = np.mean([r["test_before"] for r in rs])
            a = np.mean([r["test_after"] for r in rs])
            sec = np.mean([r["seconds"] for r in rs])
            spread = f" ({min(r['test_after'] for r in rs):.2f}–{max(r['test_after'] for r in rs):.2f})" if len(rs) > 1 else ""
            secs = f" ({min(r['seconds'] for r in rs):.0f}–{max(r['seconds'] for r in rs):.0f})" if len(rs) > 1 else ""
            lines.append(f"| {n} | {rs[0]['labels']} | {b:.2f} | **{a:.2f}**{spread} | {sec:.0f}{secs} |")
            if reached is None and round(a, 3) >= 0.9:
                reached = (n, rs[0]["labels"], sec)
        lines.append("")
        top, most = max(r["per_class"] for r in mine), max(r["per_class"] for r in rows)
        if top < most:
            lines.append(f"(Sweep stopped after {top} labels per class: at chance so far, and slow on the shared CPU.)")
        lines.append(f"Reaches accuracy ≥ 0.9 with {reached[0]} labels per class ({reached[1]} labels) in about "
                     f"{reached[2]:.0f} s." if reached else "Does not reach accuracy ≥ 0.9 in this sweep.")
        lines.append("")
    if args.json is not None or args.from_log is not None:
        raw = args.json or args.from_log
        lines += ["", f"Raw rows: [{raw.name}]({raw.name}) (regenerate this page from them with `--from-log`)."]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="cell-line")
    p.add_argument("--classes", default="COLO-704,EFO-21", help="comma-separated subset of the task's classes")
    p.add_argument("--configs", default="default,resnet18,senescence_cnn", help=f"of {', '.join(CONFIGS)}")
    p.add_argument("--per-class", default="5,10,20,40")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--test", type=int, default=100)
    p.add_argument("--epochs", type=int, default=0, help="override every configuration's epochs")
    p.add_argument("--json", type=Path, default=None, help="also write the raw rows here (JSON lines)")
    p.add_argument("--out", type=Path, default=None, help="write the Markdown report here")
    p.add_argument("--from-log", type=Path, default=None,
                   help="write the report from the JSON lines an earlier run printed, without training")
    args = p.parse_args(argv)
    if args.from_log is not None:
        rows = [json.loads(line) for line in args.from_log.read_text().splitlines() if line.startswith("{")]
        write_markdown(rows, args.out or ROOT / "docs" / "measurements" / "finetune.md", args)
        return 0
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    classes = [c for c in args.classes.split(",") if c] or None
    test_items = held_out(args.task, args.test, args.size, seed=99, classes=classes)
    run_one(args.task, "senescence_cnn", 2, args.size, 1, 1e-3, 0, test_items[:4], classes=classes)  # warm-up: imports
    rows = []
    for name in args.configs.split(","):
        cfg = CONFIGS[name]
        for n in [int(v) for v in args.per_class.split(",")]:
            for seed in [int(v) for v in args.seeds.split(",")]:
                r = run_one(args.task, cfg["start"], n, args.size, args.epochs or cfg["epochs"], cfg["lr"], seed,
                            test_items, classes=classes, freeze=cfg["freeze"], input_size=cfg["input_size"])
                r["config"] = name
                print(json.dumps(r), flush=True)
                rows.append(r)
    if args.json:
        args.json.write_text("".join(json.dumps(r) + "\n" for r in rows))
    if args.out:
        write_markdown(rows, args.out, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
