"""Render a contact sheet of every synthetic task, to judge realism by eye.

    python scripts/show_synth.py sheet.png [--per-class 3] [--seed 0] [--tasks actin protein] [--all-classes]

One block per task, one row per class (protein: one row of composites with their
labels, then the four channels of the first image).  Channel-first images are shown
as false-colour composites, each channel scaled to its 99.5th percentile.
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from napari_cellclass.core.synth import TASKS, generate  # noqa: E402


def _stretch(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    lo, hi = np.percentile(x, 0.5), np.percentile(x, 99.5)
    return np.clip((x - lo) / max(hi - lo, 1e-6), 0, 1)


def composite(img: np.ndarray, task: str) -> np.ndarray:
    """Something imshow can show as RGB, faithful to how the modality is viewed."""
    if img.ndim == 2 or img.shape[-1] == 3 and TASKS[task].layout == "YXS":
        return img
    if task == "protein":  # HPA convention: protein green, nucleus blue, microtubules red
        return np.stack([_stretch(img[2]) * 0.6, _stretch(img[0]), _stretch(img[1]) * 0.8], -1)
    return np.stack([_stretch(c) for c in img[:3]], -1)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--per-class", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tasks", nargs="*", default=list(TASKS))
    ap.add_argument("--all-classes", action="store_true", help="every available class (cell-line: 8)")
    args = ap.parse_args(argv)
    rows: list[tuple[str, list[tuple[np.ndarray, str]]]] = []
    for task in args.tasks:
        info = TASKS[task]
        if info.multilabel:
            s = generate(task, 2 * args.per_class, seed=args.seed)
            for r in range(2):
                cells = [(composite(s.images[i], task), "; ".join(s.classes[j] for j in s.labels[i]))
                         for i in range(r * args.per_class, (r + 1) * args.per_class)]
                rows.append((f"{task}", cells))
            rows.append((f"{task} channels", [(_stretch(c), n) for c, n in zip(s.images[0], info.channel_names)]))
            continue
        classes = info.available_classes if args.all_classes else info.classes
        k = len(classes)
        s = generate(task, k * args.per_class, seed=args.seed, classes=classes)
        for c, name in enumerate(classes):
            rows.append((f"{task}: {name}", [(composite(s.images[i], task), "") for i in range(c, len(s), k)]))
    ncol = max(len(r[1]) for r in rows)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(3.2 * ncol, 2.7 * len(rows)), squeeze=False)
    for ax_row, (title, cells) in zip(axes, rows):
        for j, ax in enumerate(ax_row):
            ax.axis("off")
            if j < len(cells):
                img, label = cells[j]
                ax.imshow(img, cmap="gray", interpolation="nearest")
                ax.set_title(label if label else (title if j == 0 else ""), fontsize=8, loc="left")
        ax_row[0].text(-0.05, 0.5, title, transform=ax_row[0].transAxes, rotation=90, va="center",
                       ha="right", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
