"""`cellclass predict MODEL PATH... --csv OUT`: classify files and folders.

Rows stream into the CSV as batches finish, so a folder of thousands of images
keeps memory flat, and a rerun with the same ``--csv`` skips the files already in
it (a crash or Ctrl-C costs at most the batch in flight).  Unreadable files are
reported on stderr and left out of the CSV, so a rerun retries them.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterator
from pathlib import Path

from ..app.tables import safe_cell
from ..core.io.text import printable
from . import _resume
from ._common import add_input_options, positive
from ._objects import add_object_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify image files or folders (recursive) into a CSV")
    p.add_argument("model", help="model file (.safetensors) or bioimage.io package (.zip, rdf.yaml)")
    p.add_argument("paths", nargs="+", help="image files (TIFF, PNG, JPEG) and/or folders")
    p.add_argument("--csv", dest="csv_path", default=None, help="write results here (default: print to stdout)")
    p.add_argument("--no-resume", action="store_true", help="start the CSV afresh instead of skipping files already in it")
    p.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    p.add_argument("--dask-scheduler", default=None, metavar="ADDRESS",
                   help="fan out over a Dask cluster (tcp://host:8786); workers load the model once and must see the files")
    p.add_argument("--chunk", type=int, default=64, help="images per Dask task (with --dask-scheduler)")
    add_input_options(p)
    add_object_options(p)
    p.set_defaults(func=run)


def csv_header(classes: list[str]) -> list[str]:
    # ood_score / ood stay empty for a model without OOD statistics (core.models.ood)
    return ["path", "frame", "predicted_class", "confidence", *[f"p_{c}" for c in classes], "ood_score", "ood", "model"]


def _ood_cells(rec) -> list[str]:
    return ["", ""] if rec.ood_score is None else [f"{rec.ood_score:.4f}", str(bool(rec.ood)).lower()]


def _read_done(path: Path, header: list[str]) -> tuple[list[list[str]], set[str]]:
    """Complete rows of an earlier run with the same columns; a torn last line is dropped."""
    from ..core.errors import CellclassError

    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return [], set()
    if rows[0] != header:
        raise CellclassError(
            f"{path} exists and has other columns (another model?)",
            "choose another --csv file, or pass --no-resume to overwrite it",
        )
    good = [r for r in rows[1:] if len(r) == len(header)]
    return good, {r[0] for r in good}


def _rewrite_atomically(path: Path, header: list[str], rows: list[list[str]]) -> None:
    import os
    import tempfile

    from ..core.atomicfile import publish_mode

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as out:
            w = csv.writer(out)
            w.writerow(header)
            w.writerows(rows)
        publish_mode(tmp, path)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _progress(total: int, enabled: bool) -> Iterator[None]:
    """A minimal stderr progress bar (no extra dependency)."""
    done = 0
    while True:
        yield
        done += 1
        if enabled and (done == total or done % 10 == 0):
            width = 30
            filled = int(width * done / max(total, 1))
            print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} images", end="", file=sys.stderr, flush=True)
            if done == total:
                print(file=sys.stderr)


def _records(args: argparse.Namespace, bundle, todo: list[Path]):
    """Local batched prediction, or the same rows from a Dask cluster."""
    from ..core.inference.predict import PlanePrediction, predict_records

    if not args.dask_scheduler:
        yield from predict_records(bundle, todo, args.batch_size, args.device, args.channel_axis, args.channels, on_error="skip")
        return
    import numpy as np

    from ..core.inference.dask import connect, dask_predict_rows

    positive(args.chunk, "--chunk")
    client = connect(args.dask_scheduler)
    try:
        for row in dask_predict_rows(client, args.model, todo, args.batch_size, args.device, args.channel_axis,
                                     args.channels, args.chunk):
            yield PlanePrediction(row["index"], row["name"], row["frame"], np.asarray(row["probs"], np.float32), row["error"],
                                  row.get("ood_score"), row.get("ood"))
    finally:
        client.close()


def run(args: argparse.Namespace) -> int:
    from ..core.atomicfile import describe_os_error
    from ..core.models.modelfile import load_model
    from ..core.io.files import find_images
    from ..core.inference.predict import label_of
    from ..core.errors import CellclassError

    positive(args.batch_size, "--batch-size")
    bundle = load_model(args.model)
    files = find_images(args.paths)
    if not files:
        raise CellclassError(f"no image files (TIFF, PNG, JPEG) found in {' '.join(args.paths)}", "check the paths")
    if args.objects:  # one row per segmented object: cli/_objects.py
        from ._objects import run_objects

        return run_objects(args, bundle, files)
    header = csv_header(bundle.classes)
    model_id = Path(args.model).name
    out_path = Path(args.csv_path) if args.csv_path else None
    done_rows: list[list[str]] = []
    done: set[str] = set()
    if out_path is not None and out_path.is_dir():
        raise CellclassError(f"--csv {out_path} is a folder", "give a file name for the CSV, e.g. predictions.csv")
    if out_path is not None and out_path.exists() and not args.no_resume:
        done_rows, done = _read_done(out_path, header)
    written = {(r[0], r[1]) for r in done_rows}  # resume per (path, frame): a cut stack is finished
    done = _resume.complete_files(files, _resume.frames_by_file(done_rows), bundle.in_chans, args) if done else set()
    todo = [f for f in files if safe_cell(str(f)) not in done]
    if done:
        print(f"cellclass predict: {len(files) - len(todo)} of {len(files)} images already in {out_path}; continuing", file=sys.stderr)

    if out_path is not None:
        try:
            _rewrite_atomically(out_path, header, done_rows)  # keeps complete rows, drops a torn line
            fh = open(out_path, "a", newline="", encoding="utf-8")
        except OSError as err:
            raise CellclassError(f"cannot write {out_path} ({describe_os_error(err)})",
                                 "choose a writable folder with free space for --csv; nothing was predicted") from err
    else:
        fh = sys.stdout
        csv.writer(fh).writerow(header)
    writer = csv.writer(fh)
    failures: list[str] = []
    tick = _progress(len(todo), not args.no_progress and out_path is not None)
    next(tick)
    try:
        for rec in _records(args, bundle, todo):
            if rec.frame == 0:
                next(tick)
            if rec.error is not None:
                failures.append(rec.error)
                print(f"cellclass predict: skipped: {printable(rec.error, keep='')}", file=sys.stderr)
                continue
            conf = float(rec.probs.max())
            if (safe_cell(rec.name), str(rec.frame)) in written:
                continue
            try:
                writer.writerow([safe_cell(rec.name), rec.frame, safe_cell(label_of(rec.probs, bundle)), f"{conf:.6f}",
                                 *[f"{float(p):.6f}" for p in rec.probs], *_ood_cells(rec), safe_cell(model_id)])
                fh.flush()
            except OSError as err:  # e.g. the disk filled up: the complete rows stay, a rerun resumes
                raise CellclassError(f"writing {out_path or 'the output'} failed ({describe_os_error(err)})",
                                     "free some space and rerun the same command: it continues where it stopped") from err
    finally:
        if fh is not sys.stdout:
            fh.close()
    if bundle.ood is None:  # said once the run is through, so an error stays the one line on stderr
        from ..core.models.ood import NO_STATS

        print(f"cellclass predict: {NO_STATS} (the ood_score and ood columns are empty)", file=sys.stderr)
    if failures:
        print(f"cellclass predict: error: {len(failures)} of {len(todo)} image(s) could not be read (listed above)", file=sys.stderr)
        return 2
    return 0
