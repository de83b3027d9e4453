"""`cellclass explain MODEL IMAGE... --out DIR`: explanation maps as files.

Per image (per explained frame of a stack) two files in ``--out``:
``<stem>.<method>.tif`` — float32 (K, H, W) in [0, 1] on the image's own pixel
grid, with the class names and how the maps were made as JSON in the TIFF
description — and ``<stem>.<method>.png``, one panel per map over the image.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from ._common import add_input_options, positive

METHOD_CHOICES = ("gradcam", "gradcam++", "layercam", "hirescam", "cam", "fcn")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="Grad-CAM / CAM / FCN maps of image files, as TIFF + PNG overlay")
    p.add_argument("model", help="model file (.safetensors) or bioimage.io package (.zip, rdf.yaml)")
    p.add_argument("paths", nargs="+", help="image files (TIFF, PNG, JPEG) and/or folders")
    p.add_argument("--method", default="gradcam", choices=METHOD_CHOICES, help="explanation method (default: gradcam)")
    p.add_argument("--target", default=None, metavar="CLASS|all",
                   help="class to explain, several joined by ';', or 'all' (default: the predicted class(es))")
    p.add_argument("--layer", default=None, metavar="NAME",
                   help="network layer to explain (default: the last spatial stage); 'a,b' fuses layers")
    p.add_argument("--tile", type=int, default=None, metavar="N",
                   help="explain in N x N px tiles (sliding window) for a high-resolution map of a large image")
    p.add_argument("--overlap", type=float, default=0.5, help="tile overlap fraction (default: 0.5)")
    p.add_argument("--frame", type=int, default=0, help="which plane of a stack to explain (default: 0)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the TIFF and PNG files")
    add_input_options(p)
    p.set_defaults(func=run, batch_size=8)


def _target(text: str | None):
    if text is None or text.strip().lower() in ("", "predicted"):
        return None
    if text.strip().lower() == "all":
        return "all"
    parts = [t.strip() for t in text.split(";") if t.strip()]
    return parts if len(parts) > 1 else parts[0]


def tiff_bytes(maps, metadata: dict) -> bytes:
    import tifffile

    buf = io.BytesIO()
    # tifffile's JSON description keeps the (K, H, W) shape (K = 1 too) next to our metadata
    tifffile.imwrite(buf, maps, photometric="minisblack", metadata={"axes": "CYX", **metadata})
    return buf.getvalue()


def png_bytes(rgb) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def run(args: argparse.Namespace) -> int:
    from ..core.atomicfile import write_atomic
    from ..core.models.modelfile import load_model
    from ..core.errors import CellclassError
    from ..core.explain import explain_batch
    from ..core.explain.overlay import overlay
    from ..core.inference.options import RunOptions
    from ..core.io.files import find_images, read_image
    from ..core.io.images import get_plane, inspect

    positive(args.batch_size, "--batch-size")
    if args.tile is not None:
        positive(args.tile, "--tile")
    bundle = load_model(args.model, device=args.device)  # lives on the device for the whole run
    opts = RunOptions(device=None, batch_size=args.batch_size, channel_axis=args.channel_axis,  # None: stays there
                      channels=args.channels)
    files = find_images(args.paths)
    if not files:
        raise CellclassError(f"no image files (TIFF, PNG, JPEG) found in {' '.join(args.paths)}", "check the paths")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CellclassError(f"--out {out} is a file, not a folder", "give a folder (new or existing) for the maps")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CellclassError(f"cannot create the folder {out} ({err.strerror or err})", "choose a writable --out folder") from err
    target = _target(args.target)
    stems: dict[str, int] = {}
    for start in range(0, len(files), args.batch_size):
        chunk = files[start:start + args.batch_size]
        images = [read_image(f) for f in chunk]
        results = explain_batch(bundle, images, args.method, target, args.layer, args.tile, frame=args.frame,
                                overlap=args.overlap, options=opts)
        for path, img, res in zip(chunk, images, results):
            axis = img.channel_axis if args.channel_axis == "auto" else args.channel_axis
            layout, _ = inspect(img.data, axis, None if args.channels else bundle.in_chans, img.rgb, str(path))
            plane = get_plane(img.data, layout, args.frame, str(path))
            stem = path.stem if path.stem not in stems else f"{path.stem}_{stems[path.stem]}"
            stems[path.stem] = stems.get(path.stem, 0) + 1
            meta = {**res.metadata(), "source": str(path), "model": Path(args.model).name}
            write_atomic(out / f"{stem}.{args.method}.tif", tiff_bytes(res.maps, meta))
            write_atomic(out / f"{stem}.{args.method}.png", png_bytes(overlay(plane, res.maps)))
            print(f"{path}: {', '.join(res.class_names)} → {out / (stem + '.' + args.method)}.tif/.png", file=sys.stderr)
    return 0
