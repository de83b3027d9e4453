"""`cellclass report MODEL DATA --out DIR`: figures for a paper (confusion matrix,
ROC curves, confidence of right vs wrong, reliability before/after calibration,
training curves) and the metrics JSON."""

from __future__ import annotations

import argparse

from ._common import positive


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write PNG figures (confusion, ROC, confidence, reliability, training curves) and metrics.json")
    p.add_argument("model", help="model file (.safetensors)")
    p.add_argument("data", help="class-folder tree, folder with labels.csv, or a CSV manifest (path,labels)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the figures (created if needed)")
    p.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, mps (default: auto)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default: 32)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.models.modelfile import load_model
    from ..core.evaluation.report import write_report

    positive(args.batch_size, "--batch-size")
    bundle = load_model(args.model)
    for path in write_report(bundle, args.data, args.out, device=args.device, batch_size=args.batch_size):
        print(path)
    return 0
