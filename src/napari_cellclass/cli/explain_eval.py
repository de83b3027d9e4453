"""`cellclass explain-eval MODEL DATA --masks DIR --json OUT`: how well maps localise.

DATA is a multi-label data set with masks as ``cellclass synth protein`` writes it
(``labels.csv``, ``classes.txt``, ``images/``, ``masks/<stem>.tif``).  For every
method: pointing game (map maximum on the mask, ``--tolerance`` px), mask IoU at a
threshold chosen on a validation split, PxAP, deletion/insertion AUC, and the
randomised-weights sanity check.  The JSON is written atomically.
"""

from __future__ import annotations

import argparse
import json
import sys

from ._common import positive

DEFAULT_METHODS = "fcn,gradcam,gradcam++,layercam,hirescam,cam"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain-eval", help="score explanation maps against ground-truth masks (pointing game, IoU, PxAP…)")
    p.add_argument("model", help="model file (.safetensors)")
    p.add_argument("data", help="data set folder with labels.csv (or the CSV itself)")
    p.add_argument("--masks", default=None, metavar="DIR", help="folder of <stem>.tif masks (default: DATA/masks)")
    p.add_argument("--json", dest="json_path", required=True, metavar="OUT", help="write the scores here")
    p.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated (default: {DEFAULT_METHODS}); "
                   "methods the model cannot do are reported as errors")
    p.add_argument("--val-fraction", type=float, default=0.5, help="images used to choose the IoU threshold (default: 0.5)")
    p.add_argument("--tolerance", type=float, default=15.0, help="pointing-game tolerance in px (default: 15)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.add_argument("--deletion-pairs", type=int, default=16, help="(image, class) pairs for deletion/insertion (0: skip)")
    p.add_argument("--sanity-images", type=int, default=4, help="images for the randomised-weights check (0: skip)")
    p.add_argument("--seed", type=int, default=0, help="seed of the validation split and the randomisation")
    p.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, mps (default: auto)")
    p.add_argument("--batch-size", type=int, default=8, help="images per backward pass (default: 8)")
    p.set_defaults(func=run)


def channel_first(img, in_chans: int):
    """The file's pixels as (C, H, W) in their own type (the model normalises by its range)."""
    import numpy as np

    from ..core.errors import ImageError
    from ..core.io.images import inspect

    layout, _ = inspect(img.data, img.channel_axis, in_chans, img.rgb, str(img.path))
    if layout.is_stack:
        raise ImageError(f"{img.path} is a stack {layout.describe()}", "explain-eval takes single images")
    data = np.asarray(img.data)
    return data[None] if layout.channel_axis is None else np.moveaxis(data, layout.channel_axis, 0)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..core.atomicfile import write_atomic
    from ..core.models.modelfile import load_model
    from ..core.errors import CellclassError
    from ..core.explain.localisation import localisation_scores, read_masked_dataset
    from ..core.io.files import read_image

    positive(args.batch_size, "--batch-size")
    if not 0.0 < args.val_fraction < 1.0:
        raise CellclassError(f"--val-fraction must be between 0 and 1, got {args.val_fraction}")
    bundle = load_model(args.model, device=args.device)
    paths, labels, classes, mask_paths = read_masked_dataset(args.data, args.masks, args.limit)
    if len(paths) < 2:
        raise CellclassError("explain-eval needs at least 2 images (a validation and a test part)")
    images, masks = [], []
    for p, m in zip(paths, mask_paths):
        images.append(channel_first(read_image(p), bundle.in_chans))
        masks.append(np.asarray(read_image(m).data) > 0)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    scores = localisation_scores(bundle, images, labels, masks, classes, methods, val_fraction=args.val_fraction,
                                 seed=args.seed, tolerance=args.tolerance, deletion_pairs=args.deletion_pairs,
                                 sanity_images=args.sanity_images, batch_size=args.batch_size, device=None)
    scores = {"model": args.model, "data": args.data, **scores}
    write_atomic(args.json_path, (json.dumps(scores, indent=2) + "\n").encode())
    for method, s in scores["methods"].items():
        if "error" in s:
            print(f"{method:10s} not available: {s['error']}", file=sys.stderr)
        else:
            print(f"{method:10s} pointing {s['pointing_game']:.3f}  IoU {s['iou']:.3f} (thr {s['iou_threshold']:.2f})  "
                  f"PxAP {s['pxap']:.3f}", file=sys.stderr)
    return 0
