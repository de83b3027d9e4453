"""Fine-tuning time vs number of labels: head-only on cached features, head-only uncached
and a full fine-tune, side by side, with one ``predict()`` pass over the same labels as
the yardstick (issue 16's target: cached head-only ≤ 3x that pass), plus a full
fine-tune's time per epoch beside a plain PyTorch loop over the same tensors.

Everything goes through the public API the panel uses: ``start_model("model", …)`` on
the built-in model (a new head for the two classes), ``finetune(…, FineTuneOptions(…))``
— which includes the held-out before/after evaluation — and ``predict``.  The data come
from ``benchmarks.indep_data`` (not ``core.synth``): 12-bit coarse vs fine textures the
built-in model never saw; a separate test set scores each tuned model.  Rows are
interleaved per label count so a busy machine slows every variant alike; the feature
store is cleared before every cached run, so each pays for its own features.

``python -m benchmarks.bench_finetune_cache [--full] [--labels 5,10,20] [--variants cached,cached_2views]
[--epochs E] [--size S] [--out DIR]``
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from . import indep_data

DATASET = "u12-texture"
QUICK = {"labels": (5, 10, 20, 40), "epochs": 20, "size": 160, "n_test": 40, "cache_views": 2}
FULL = {"labels": (5, 10, 20, 40, 200), "epochs": 20, "size": 160, "n_test": 200, "cache_views": 2}
VARIANTS = ("cached", "cached_2views", "uncached", "full")


def _items(n_per_class: int, size: int, seed: int) -> list[tuple]:
    images, labels, _ = indep_data.make(DATASET, 2 * n_per_class, size, seed)
    return [(img[None].astype(np.float32), [lab], f"img{i}") for i, (img, lab) in enumerate(zip(images, labels))]


def _accuracy(bundle, test: list[tuple]) -> float:
    from napari_cellclass.core.inference.predict import predict

    p = predict(bundle, [it[0] for it in test], device="cpu", channel_axis=0)
    return float(np.mean(np.asarray(p).argmax(1) == np.array([it[1][0] for it in test])))


def _options(variant: str, cfg: dict):
    from napari_cellclass.core.training.finetune import FineTuneOptions

    common = {"epochs": cfg["epochs"], "batch_size": 16, "lr": 1e-3, "seed": 0}
    if variant == "full":
        return FineTuneOptions(freeze_fraction=0.0, lr=1e-4, **{k: v for k, v in common.items() if k != "lr"})
    return FineTuneOptions(freeze_fraction=1.0, feature_cache=variant != "uncached",
                           cache_views=cfg["cache_views"] if variant == "cached_2views" else 0, **common)


def _row(start, classes: list[str], items: list[tuple], test: list[tuple], cfg: dict) -> dict:
    from napari_cellclass.core.inference.predict import predict
    from napari_cellclass.core.training import feature_cache
    from napari_cellclass.core.training.finetune import finetune

    t0 = time.perf_counter()
    predict(start, [it[0] for it in items], device="cpu", channel_axis=0)
    out = {"labels_per_class": len(items) // 2, "predict_s": time.perf_counter() - t0}
    for variant in cfg.get("variants", VARIANTS):
        feature_cache.FEATURES.clear()
        t0 = time.perf_counter()
        res = finetune(start, items, classes, _options(variant, cfg), device="cpu")
        out[f"{variant}_s"] = time.perf_counter() - t0
        out[f"{variant}_ratio"] = out[f"{variant}_s"] / out["predict_s"]
        out[f"{variant}_test_acc"] = _accuracy(res.bundle, test)
        if variant == "full":
            out["full_epoch_s"] = float(np.median([h["time_s"] for h in res.history]))
    if "full" in cfg.get("variants", VARIANTS):
        out["plain_epoch_s"] = _plain_epoch_s(start, items, cfg)
    out["load_average"] = [round(v, 2) for v in os.getloadavg()]  # the machine is shared: say how busy it was
    return out


def _plain_epoch_s(start, items: list[tuple], cfg: dict) -> float:
    """Median epoch of a plain loop (Adam, batch 16, random flips) on the same network and tensors."""
    import torch

    from napari_cellclass.core.io.images import match_channels

    net, pre = copy.deepcopy(start.network), start.preprocess
    planes = [torch.from_numpy(np.ascontiguousarray(match_channels(it[0], start.in_chans, None, "x"))) for it in items]
    x = torch.cat([pre.prepare_batch(p[None], torch.tensor([np.nan]))[0] for p in planes])
    y = torch.tensor([it[1][0] for it in items])
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    times = []
    for _ in range(min(3, cfg["epochs"])):
        net.train()
        t0 = time.perf_counter()
        for idx in torch.randperm(len(x)).split(16):
            if len(idx) < 2:
                continue
            xb = x[idx].clone()
            for axis in (2, 3):
                m = torch.rand(len(xb)) < 0.5
                xb[m] = xb[m].flip(axis)
            loss = torch.nn.functional.cross_entropy(net(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    # the fine-tune trains on 3/4 of the labels (the rest is its validation split): compare per image
    return float(np.median(times)) * 0.75


def _warm_up(start, classes: list[str], cfg: dict) -> None:
    """One tiny run of every variant: the first forward/backward of a process pays one-off set-up costs."""
    from napari_cellclass.core.inference.predict import predict
    from napari_cellclass.core.training.finetune import finetune

    items = _items(3, cfg["size"], seed=7)
    predict(start, [it[0] for it in items], device="cpu", channel_axis=0)
    for variant in cfg.get("variants", VARIANTS):
        finetune(start, items, classes,
                 _options(variant, {**cfg, "epochs": 1}), device="cpu")


def to_markdown(rows: list[dict], cfg: dict) -> str:
    lines = [f"# Fine-tune time vs labels (built-in model, {DATASET}, {cfg['size']} px, {cfg['epochs']} epochs, CPU)", "",
             ("seconds (ratio to one predict() pass over the labels) and test accuracy on "
             f"{cfg['n_test']} unseen images"), "",
             ("| labels/class | predict | head cached | head cached, 2 views | head uncached | full | "
             "full epoch | plain-loop epoch | load average (1, 5, 15 min) |"), "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{r[f'{v}_s']:.1f} s ({r[f'{v}_ratio']:.1f}x) acc {r[f'{v}_test_acc']:.2f}" if f"{v}_s" in r
                 else "not run" for v in VARIANTS]
        epochs = [f"{r[k]:.2f} s" if k in r else "–" for k in ("full_epoch_s", "plain_epoch_s")]
        lines.append(f"| {r['labels_per_class']} | {r['predict_s']:.2f} s | " + " | ".join(cells + epochs)
                     + f" | {' '.join(str(v) for v in r.get('load_average', []))} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_finetune_cache", description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="5..200 labels per class, 20 epochs, 160 px (the issue's sizes)")
    p.add_argument("--labels", default=None, help="comma-separated labels per class")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--variants", default=None, help=f"comma-separated subset of {','.join(VARIANTS)}")
    p.add_argument("--out", default="benchmark-results")
    args = p.parse_args(argv)
    cfg = dict(FULL if args.full else QUICK)
    if args.labels:
        cfg["labels"] = tuple(int(s) for s in args.labels.split(","))
    cfg.update({k: v for k, v in (("epochs", args.epochs), ("size", args.size)) if v is not None})
    if args.variants:
        unknown = sorted(set(args.variants.split(",")) - set(VARIANTS))
        if unknown:
            p.error(f"unknown variant(s) {', '.join(unknown)}: use {', '.join(VARIANTS)}")
        cfg["variants"] = tuple(v for v in VARIANTS if v in args.variants.split(","))
    from napari_cellclass.builtin import default_model_path
    from napari_cellclass.core.models.modelfile import load_model
    from napari_cellclass.core.training.finetune import start_model

    classes = list(indep_data.DATASETS[DATASET][1])
    size = (cfg["size"], cfg["size"])
    start = start_model("model", None, classes, 3, bundle=load_model(default_model_path()), input_size=size)
    test = _items(cfg["n_test"] // 2, cfg["size"], seed=2000)  # never trained on
    _warm_up(start, classes, cfg)
    rows = []
    for n in cfg["labels"]:
        rows.append(_row(start, classes, _items(n, cfg["size"], seed=1000 + n), test, cfg))
        print(f"[finetune_cache] {json.dumps(rows[-1])}", file=sys.stderr, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "finetune_cache.json").write_text(json.dumps({"config": cfg, "rows": rows}, indent=2))
    table = to_markdown(rows, cfg)
    (out / "finetune_cache.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
