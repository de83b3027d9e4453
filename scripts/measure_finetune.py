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
    from napari_cellclass.core.images import get_plane, guess_layout
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
    from napari_cellclass.core.bundle import load_model
    from napari_cellclass.core.finetune import FineTuneOptions, evaluate_items, finetune_steps, in_chans_of, start_model

    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(Path(tmp), task, per_class, size, seed=1000 + seed, classes=classes)
        t0 = time.perf_counter()
        items = [x.as_tuple() for x in training_samples(store)]
        kind, name = ("model", None) if start == "default" else ("scratch", start)
        bundle = load_model(default_model_path()) if kind == "model" else None
        model = start_model(kind, name, store.class_names, in_chans_of(items), bundle=bundle,
                            input_size=(input_size, input_size) if input_size else None)
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
            "val_before": outcome.before["accuracy"], "val_after": outcome.after["accuracy"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="brightfield")
    p.add_argument("--starts", default="senescence_cnn,default")
    p.add_argument("--per-class", default="5,10,20,40")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seeds", default="0")
    p.add_argument("--test", type=int, default=100)
    p.add_argument("--classes", default="", help="comma-separated subset of the task's classes")
    p.add_argument("--freeze", type=float, default=0.0)
    p.add_argument("--input", type=int, default=0, help="network input size (0: the model's own)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    classes = [c for c in args.classes.split(",") if c] or None
    test_items = held_out(args.task, args.test, args.size, seed=99, classes=classes)
    rows = []
    for start in args.starts.split(","):
        for n in [int(v) for v in args.per_class.split(",")]:
            for seed in [int(v) for v in args.seeds.split(",")]:
                r = run_one(args.task, start, n, args.size, args.epochs, args.lr, seed, test_items, classes=classes,
                            freeze=args.freeze, input_size=args.input)
                print(json.dumps(r), flush=True)
                rows.append(r)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
