"""`cellclass predict MODEL IMAGES... --objects LABELS --csv OUT`: one row per segmented object.

LABELS is a label image (for one image) or a folder of label images matched to the
images by file stem (``a.tif`` ↔ ``labels/a.tif``, also ``a_labels``, ``a_masks``,
``a_cp_masks``, ``a_label``, ``a_mask`` as cellpose and others name them).  Rows
stream into the CSV as batches finish; a rerun with the same CSV keeps every image
whose rows are complete (as many as its label image has objects) and redoes the
rest, so a crash costs at most one image.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from ..core.errors import CellclassError

LABEL_SUFFIXES = ("", "_labels", "_label", "_masks", "_mask", "_cp_masks")


def add_object_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--objects", default=None, metavar="LABELS",
                   help="classify every segmented object: a label image (one image) or a folder of label images "
                        "matched to the images by file stem; one CSV row per object")
    p.add_argument("--object-margin", type=int, default=0, metavar="PX",
                   help="with --objects: pixels around each object's bounding box in its crop (default 0: the box exactly)")
    p.add_argument("--object-mask", action="store_true",
                   help="with --objects: set the background and the other objects in each crop to 0")


def object_header(classes: list[str]) -> list[str]:
    return ["path", "frame", "label", "centroid_y", "centroid_x", "area", "predicted_class", "confidence",
            *[f"p_{c}" for c in classes], "ood_score", "ood", "model"]


def ood_cells(r) -> list[str]:
    """Empty for a model without OOD statistics, as the image rows of ``cellclass predict``."""
    return ["", ""] if r.ood_score is None else [f"{r.ood_score:.4f}", str(bool(r.ood)).lower()]


def match_labels(images: list[Path], labels: Path) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(image, label image) pairs, and a message for each image without a label image."""
    from ..core.io.files import IMAGE_SUFFIXES

    if not labels.exists():
        raise CellclassError(f"--objects {labels}: no such file or folder", "pass a label image or a folder of them")
    if labels.is_file():
        others = [p for p in images if p.resolve() != labels.resolve()]
        if len(others) != 1:
            raise CellclassError(f"--objects {labels} is one label image but {len(others)} images were given",
                                 "pass one image with it, or a folder of label images named like the images")
        return [(others[0], labels)], []
    by_stem: dict[str, Path] = {}
    for q in sorted(labels.rglob("*")):
        if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES:
            by_stem.setdefault(q.stem, q)
    in_labels = {q.resolve() for q in by_stem.values()}
    pairs, missing = [], []
    for img in images:
        if img.resolve() in in_labels:
            continue  # the label folder was also given (or lies inside a given folder) as images
        found = next((by_stem[img.stem + s] for s in LABEL_SUFFIXES if img.stem + s in by_stem), None)
        if found is None:
            missing.append(f"{img}: no label image named {img.stem}{{{','.join(LABEL_SUFFIXES[1:])}}}.* in {labels}")
        else:
            pairs.append((img, found))
    return pairs, missing


def _read_rows(path: Path, header: list[str]) -> list[list[str]]:
    """Complete rows of an earlier run with the same columns."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if rows and rows[0] != header:
        raise CellclassError(f"{path} exists and has other columns (another model, or not an --objects table?)",
                             "choose another --csv file, or pass --no-resume to overwrite it")
    return [r for r in rows[1:] if len(r) == len(header)]


def _rewrite(path: Path, header: list[str], rows: list[list[str]]) -> None:
    import io

    from ..core.atomicfile import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    text = io.StringIO(newline="")
    w = csv.writer(text)
    w.writerow(header)
    w.writerows(rows)
    write_atomic(path, text.getvalue().encode())


def _label_data(path: Path):
    from ..core.io.files import read_image

    return read_image(path).data


def _done_images(rows: list[list[str]], pairs: list[tuple[Path, Path]]) -> tuple[list[list[str]], set[str]]:
    """Rows of the images an earlier run finished (row count == object count); the rest is redone."""
    from ..core.inference.objects import count_objects

    counts: dict[str, int] = {}
    for r in rows:
        counts[r[0]] = counts.get(r[0], 0) + 1
    done: set[str] = set()
    for img, lab in pairs:
        n = counts.get(str(img), 0)
        if n:
            data = _label_data(lab)
            n_frames = data.shape[0] if data.ndim == 3 else 1
            if count_objects(data, n_frames, str(lab)) == n:
                done.add(str(img))
    return [r for r in rows if r[0] in done], done


def run_objects(args: argparse.Namespace, bundle, files: list[Path]) -> int:
    """The --objects branch of ``cellclass predict`` (after the model is loaded)."""
    from ..core.atomicfile import describe_os_error

    if args.dask_scheduler:
        raise CellclassError("--objects does not run on a Dask cluster yet", "leave out --dask-scheduler")
    if args.object_margin < 0:
        raise CellclassError(f"--object-margin must be 0 or more pixels, got {args.object_margin}")
    pairs, missing = match_labels(files, Path(args.objects))
    for m in missing:
        print(f"cellclass predict: skipped: {m}", file=sys.stderr)
    header = object_header(bundle.classes)
    out_path = Path(args.csv_path) if args.csv_path else None
    done_rows: list[list[str]] = []
    done: set[str] = set()
    if out_path is not None and out_path.exists() and not args.no_resume:
        done_rows, done = _done_images(_read_rows(out_path, header), pairs)
        if done:
            print(f"cellclass predict: {len(done)} of {len(pairs)} images already in {out_path}; continuing", file=sys.stderr)
    todo = [(img, lab) for img, lab in pairs if str(img) not in done]
    if out_path is not None:
        try:
            _rewrite(out_path, header, done_rows)  # keeps finished images, drops the rest and a torn line
            fh = open(out_path, "a", newline="")  # noqa: SIM115 - closed in the finally below
        except OSError as err:
            raise CellclassError(f"cannot write {out_path} ({describe_os_error(err)})",
                                 "choose a writable folder with free space for --csv; nothing was predicted") from err
    else:
        fh = sys.stdout
        csv.writer(fh).writerow(header)
    try:
        failures = _classify_all(args, bundle, todo, csv.writer(fh), fh, out_path)
    finally:
        if fh is not sys.stdout:
            fh.close()
    failures += len(missing)
    if failures:
        print(f"cellclass predict: error: {failures} image(s) could not be classified (listed above)", file=sys.stderr)
        return 2
    return 0


def _classify_all(args: argparse.Namespace, bundle, todo: list[tuple[Path, Path]], writer, fh, out_path) -> int:
    from ..core.atomicfile import describe_os_error
    from ..core.inference.objects import predict_objects_steps
    from ..core.inference.options import RunOptions
    from ._progress import Bar

    options = RunOptions(device=args.device, batch_size=args.batch_size, channel_axis=args.channel_axis,
                         channels=args.channels)
    model_id = Path(args.model).name
    bar = Bar(enabled=not args.no_progress and out_path is not None)
    failures = 0
    for i, (img, lab) in enumerate(todo):
        try:
            job = predict_objects_steps(bundle, img, _label_data(lab), args.object_margin, args.object_mask,
                                        options=options, name=str(img), label_name=str(lab))
            for event in job:
                bar.update(event.done, event.total, f"objects of image {i + 1}/{len(todo)}")
                for r in event.item or ():
                    writer.writerow([str(img), r.box.frame, r.box.label, f"{r.box.centroid[0]:.2f}",
                                     f"{r.box.centroid[1]:.2f}", r.box.area, r.predicted_class, f"{r.confidence:.6f}",
                                     *[f"{float(p):.6f}" for p in r.probs], *ood_cells(r), model_id])
                fh.flush()
        except OSError as err:  # e.g. the disk filled up: the complete rows stay, a rerun resumes
            raise CellclassError(f"writing {out_path or 'the output'} failed ({describe_os_error(err)})",
                                 "free some space and rerun the same command: it continues where it stopped") from err
        except CellclassError as err:
            bar.close()
            failures += 1
            print(f"cellclass predict: skipped: {img}: {err}", file=sys.stderr)
    bar.close()
    if bundle.ood is None:  # said once, after the rows, as the image branch does
        from ..core.models.ood import NO_STATS

        print(f"cellclass predict: {NO_STATS} (the ood_score and ood columns are empty)", file=sys.stderr)
    return failures
