"""`cellclass cv DATA --folds K --preset NAME | --arch ARCH --json OUT`: k-fold
cross-validation as study 1 reported it (every fold, then mean ± SD).

Each fold trains a fresh model on the other folds with the same options as
`cellclass train` and is scored on the held-out fold.  Progress goes to stderr;
Ctrl-C stops after the current step and reports the folds finished so far.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from ._trainopts import add_train_options, train_overrides


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cv", help="k-fold cross-validation: per-fold metrics and mean ± SD")
    p.add_argument("data", help="class-folder tree, folder with labels.csv, or a CSV manifest (path,labels)")
    p.add_argument("--folds", type=int, default=None,
                   help="number of folds (default: the preset's cv_folds, e.g. 10 for study 1; else 10)")
    p.add_argument("--json", dest="json_path", default=None, metavar="OUT", help="write all results as JSON ('-' = stdout)")
    add_train_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=run)


def _pm(s: dict[str, Any] | None) -> str:
    if not s or s.get("mean") is None:
        return "n/a"
    return f"{s['mean']:.3f} ± {s['sd']:.3f}"


def summary_lines(res: dict[str, Any]) -> list[str]:
    s = res["summary"]
    lines = [f"{res['folds']}-fold cross-validation of {res['model']} on {res['n_images']} images"
             + (" (cancelled: folds done so far)" if res["cancelled"] else "")]
    for f in res["per_fold"]:
        m = f["metrics"]
        lines.append(f"  fold {f['fold']}: accuracy {m['accuracy']:.3f}, macro F1 "
                     + ("n/a" if m["macro_f1"] is None else f"{m['macro_f1']:.3f}")
                     + f", AUC {'n/a' if m['auc_macro'] is None else format(m['auc_macro'], '.3f')} (test n={f['n_test']})")
    for key in ("accuracy", "macro_f1", "auc_macro", "mean_dice", "exact_match"):
        if key in s:
            lines.append(f"{key.replace('_', ' ')}: {_pm(s[key])}")
    for stat in ("precision", "recall", "f1"):
        if s.get(f"per_class_{stat}"):
            label = "F1" if stat == "f1" else stat
            lines.append(f"per-class {label}: " + ", ".join(f"{c} {_pm(v)}" for c, v in s[f"per_class_{stat}"].items()))
    return lines


def run(args: argparse.Namespace) -> int:
    from ..core.training.crossval import cross_validate_steps
    from ..core.errors import CellclassError
    from .evaluate import write_json

    if args.folds is not None and args.folds < 2:
        raise CellclassError(f"--folds must be at least 2, got {args.folds}")
    stop = threading.Event()

    def on_sigint(signum, frame):  # first Ctrl-C: finish the step and report; second: abort
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\ncellclass cv: stopping after this step (Ctrl-C again to abort)", file=sys.stderr, flush=True)

    in_main = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGINT, on_sigint) if in_main else None
    try:
        gen = cross_validate_steps(args.preset or args.arch, args.data, args.folds, args.seed, device=args.device,
                                   channel_axis=args.channel_axis, stop=stop, **train_overrides(args))
        while True:
            try:
                p = next(gen)
            except StopIteration as done:
                res = done.value
                break
            ev = p.event
            if not args.quiet and (ev is None or getattr(ev, "kind", "") in ("epoch", "stage", "done") or p.fold_metrics):
                print(f"cellclass cv: {p.message}", file=sys.stderr, flush=True)
    finally:
        if in_main:
            signal.signal(signal.SIGINT, old)
    if args.json_path != "-":
        print("\n".join(summary_lines(res)))
    if args.json_path:
        write_json(res, args.json_path)
    return 130 if res["cancelled"] else 0
