"""`cellclass evaluate MODEL DATA --json OUT`: score a model on a labelled data set.

DATA is a folder with one sub-folder per class, a folder with ``labels.csv``, or a
CSV manifest.  A readable summary goes to stdout; ``--json`` writes every metric
(``-`` prints the JSON instead of the summary).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ._common import channel_axis, positive


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="accuracy, F1, AUC, confusion matrix (and Dice for multi-label) on labelled data")
    p.add_argument("model", help="model file (.safetensors)")
    p.add_argument("data", help="class-folder tree, folder with labels.csv, or a CSV manifest (path,labels)")
    p.add_argument("--json", dest="json_path", default=None, metavar="OUT", help="write all metrics as JSON ('-' = stdout)")
    p.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, mps (default: auto)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default: 32)")
    p.add_argument("--channel-axis", type=channel_axis, default="auto", metavar="AXIS",
                   help="axis holding the channels in the images: an integer, 'auto' or 'none'")
    p.set_defaults(func=run)


def _num(v: Any, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def summary_lines(m: dict[str, Any]) -> list[str]:
    """The metrics as a short table a person reads."""
    classes = m["classes"]
    head = f"{m['n_images']} images, {len(classes)} classes: accuracy {_num(m['accuracy'])}, macro F1 {_num(m['macro_f1'])}, " \
           f"macro AUC {_num(m['auc_macro'])}"
    lines = [head]
    if m.get("auc_note"):
        lines.append(f"  ({m['auc_note']})")
    if "mean_dice" in m:
        lines.append(f"multi-label: mean Dice {_num(m['mean_dice'])}, exact match {_num(m['exact_match'])}, "
                     f"mean per-class correct rate {_num(m.get('mean_correct_rate'))}")
    conf = m.get("confidence")
    if conf:
        lines.append(f"confidence: right {_num(conf['right_mean'])} (n={conf['right']['n']}), "
                     f"wrong {_num(conf['wrong_mean'])} (n={conf['wrong']['n']})")
    lines.extend(trust_lines(m))
    w = max(len("class"), *(len(c) for c in classes))
    lines.append(f"{'class':<{w}}  precision  recall     F1  support")
    for c in classes:
        pc = m["per_class"][c]
        lines.append(f"{c:<{w}}  {_num(pc['precision']):>9}  {_num(pc['recall']):>6}  {_num(pc['f1']):>5}  {pc['support']:>7}")
    cols = m.get("confusion_columns", classes)
    lines.append("confusion matrix (rows: true class; columns: " + ", ".join(cols) + ")")
    for c, row in zip(classes, m["confusion_matrix"]):
        lines.append(f"{c:<{w}}  " + " ".join(f"{v:>5}" for v in row))
    if "correct_rate_by_n_labels" in m:
        lines.append("by number of labels per image: " + ", ".join(
            f"{n}: {_num(v['exact_match'], 2)} exact (n={v['n_images']})" for n, v in m["correct_rate_by_n_labels"].items()))
    return lines


def trust_lines(m: dict[str, Any]) -> list[str]:
    """Calibration (ECE over 15 bins, Brier) before -> after the stored temperature, and the OOD flags."""
    lines = []
    cal = m.get("calibration") or {}
    if "ece_before" in cal:
        lines.append(f"calibration (temperature {cal['temperature']:.3g}): ECE {_num(cal['ece_before'])} -> {_num(cal['ece_after'])}, "
                     f"Brier {_num(cal['brier_before'])} -> {_num(cal['brier_after'])}, NLL {_num(cal['nll_before'])} -> {_num(cal['nll_after'])}")
        if cal.get("note"):
            lines.append(f"  ({cal['note']})")
    o = m.get("ood") or {}
    if "flagged" in o:
        lines.append(f"out of distribution: {o['flagged']} of {o['n']} images flagged (score above {o['threshold']:.3g})")
    elif o.get("note"):
        lines.append(f"out of distribution: {o['note']}")
    return lines


def write_json(data: dict[str, Any], target: str) -> None:
    from ..core.atomicfile import describe_os_error, write_atomic
    from ..core.errors import CellclassError

    text = json.dumps(data, indent=2)
    if target == "-":
        print(text)
        return
    path = Path(target)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, (text + "\n").encode())
    except OSError as err:
        raise CellclassError(f"cannot write {path} ({describe_os_error(err)})", "choose a writable location") from err


def run(args: argparse.Namespace) -> int:
    from ..core.models.modelfile import load_model
    from ..core.evaluation.evaluate import evaluate

    positive(args.batch_size, "--batch-size")
    bundle = load_model(args.model)
    metrics = evaluate(bundle, args.data, device=args.device, batch_size=args.batch_size, channel_axis=args.channel_axis)
    if args.json_path != "-":
        print("\n".join(summary_lines(metrics)))
    if args.json_path:
        write_json(metrics, args.json_path)
        if args.json_path != "-":
            print(f"cellclass evaluate: metrics written to {args.json_path}", file=sys.stderr)
    return 0
