"""`cellclass train DATA --preset NAME | --arch ARCH | --resume MODEL --out MODEL.safetensors`.

DATA is a folder with one sub-folder per class, a folder with ``labels.csv``, or a
CSV manifest.  Progress goes to stderr.  Ctrl-C stops at the next step, saves the
best model so far to ``--out`` and exits with code 130; a second Ctrl-C aborts
without saving.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.progress import drain
from ._trainopts import add_train_options, train_request

if TYPE_CHECKING:
    from ._progress import Bar


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train or fine-tune a model on a labelled data set",
                       description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("data", help="class-folder tree, folder with labels.csv, or a CSV manifest (path,labels)")
    add_train_options(p, resume=True)
    p.add_argument("--out", required=True, help="where to save the trained model (.safetensors)")
    p.add_argument("--no-progress", action="store_true", help="print epoch lines only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.models.modelfile import save_model
    from ..core.training.api import train
    from ._common import check_writable
    from ._progress import Bar

    model = args.preset or args.arch or args.resume
    check_writable(args.out, "--out")
    stop = threading.Event()

    def on_sigint(signum, frame):  # first Ctrl-C: finish cleanly with the best model; second: abort
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\ncellclass train: stopping after this step and saving the best model so far "
              "(Ctrl-C again to abort without saving)", file=sys.stderr, flush=True)

    in_main = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGINT, on_sigint) if in_main else None
    from ..core.training.distributed import context as _dist

    is_main = _dist().is_main
    bar = Bar(enabled=not args.no_progress and is_main, lines=is_main)  # one progress report per torchrun job
    try:
        build, recipe = train_request(args)
        gen = train(model, args.data, device=args.device, seed=args.seed, stop=stop, channel_axis=args.channel_axis,
                    build=build, **recipe)
        result = drain(gen, lambda ev: _show(bar, ev))
    finally:
        bar.close()
        if in_main:
            signal.signal(signal.SIGINT, old)
    from ..core.training.distributed import barrier, context, teardown

    ctx = context()
    if result.cancelled and not result.bundle.provenance["training"].get("epochs_run"):
        # weights that never finished an epoch are not a model: an existing --out stays byte-identical
        teardown(ctx)
        kept = f"; {args.out} was left unchanged" if Path(args.out).exists() else ""
        print(f"cellclass train: interrupted before the first completed epoch; no model written{kept}", file=sys.stderr)
        return 130
    if not ctx.is_main:  # under torchrun the processes hold the same model: rank 0 writes it
        barrier(ctx)
        teardown(ctx)
        return 130 if result.cancelled else 0
    path = save_model(result.bundle, args.out)
    barrier(ctx)
    teardown(ctx)
    tr = result.bundle.provenance["training"]
    metrics = ", ".join(f"{k} {v:.3f}" for k, v in tr["metrics"].items())
    kept = tr.get("kept") or {}
    summary = (f"kept epoch {kept['epoch']}" if kept else f"best epoch {tr['best_epoch']}") + (f" ({metrics})" if metrics else "")
    if result.cancelled:
        print(f"cellclass train: interrupted after {tr['epochs_run']} epoch(s); saved the best model so far to {path} "
              f"[{summary}]", file=sys.stderr)
        return 130
    early = " (early stopping)" if result.stopped_early else ""
    print(f"cellclass train: {tr['epochs_run']} epoch(s){early} in {tr['time_s']:.0f} s; saved {path} [{summary}]",
          file=sys.stderr)
    if kept:  # which weights were saved, and why: an earlier epoch is restored only on clear evidence
        print(f"cellclass train: kept epoch {kept['epoch']}: {kept['reason']}", file=sys.stderr)
    return 0


def _show(bar: Bar, ev: Any) -> None:
    """One training report on the terminal: the bar for steps, a line for epochs and stages."""
    if ev.kind == "step":
        bar.update(ev.step, ev.steps, ev.line().split("  ", 2)[-1] if ev.loss is not None else "")
    elif ev.kind == "start":
        if ev.steps:
            bar.message(f"cellclass train: {ev.message}")
        else:
            bar.status(ev.message)  # preparing images i/n
    elif ev.kind in ("epoch", "stage"):
        bar.message(ev.line() if ev.kind == "epoch" else ev.message)
