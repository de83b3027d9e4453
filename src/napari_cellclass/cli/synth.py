"""`cellclass synth TASK OUTDIR --n N`: write a synthetic data set in the layout `train` reads."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    # the task list is not imported here: building the parser must stay cheap for every command
    p = sub.add_parser("synth", help="write a synthetic microscopy data set (tests, demos, benchmarks)")
    p.add_argument("task", help="cell-line, brightfield, actin, senescence or protein (one per source study)")
    p.add_argument("outdir", help="folder to write (created; existing files of the same names are replaced)")
    p.add_argument("--n", type=int, default=100, help="number of images, balanced over the classes (default: 100)")
    p.add_argument("--seed", type=int, default=0, help="image i is a pure function of (task, seed, i) (default: 0)")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=None, help="image size (default: the task's)")
    p.add_argument("--classes", default=None, metavar="A,B,...", help="comma-separated subset of the task's classes")
    p.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.errors import CellclassError
    from ..core.synth import write_dataset
    from ._progress import Bar

    bar = Bar(enabled=not args.no_progress)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    try:
        out = write_dataset(args.task, args.outdir, args.n, seed=args.seed, size=tuple(args.size) if args.size else None,
                            classes=classes, progress=lambda done, total: bar.update(done, total, "images"))
    except ValueError as err:  # the generators explain bad task / size / classes / n in a ValueError
        raise CellclassError(str(err), "see `cellclass synth --help`") from err
    except OSError as err:
        raise CellclassError(f"cannot write to {args.outdir} ({err.strerror or err})", "choose a writable folder") from err
    bar.close()
    print(f"cellclass synth: wrote {args.n} {args.task} images to {out}", file=sys.stderr)
    return 0
