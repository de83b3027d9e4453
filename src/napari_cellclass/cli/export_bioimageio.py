"""`cellclass export-bioimageio MODEL OUT.zip`: a BioImage Model Zoo package (spec 0.5) of a model."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-bioimageio", help="write a model as a bioimage.io model package (spec 0.5 zip)")
    p.add_argument("model", help="model file (.safetensors), or 'default' for the built-in demonstration model")
    p.add_argument("out", help="package to write (.zip)")
    p.add_argument("--author", action="append", default=None, help="author name (repeat for several)")
    p.add_argument("--license", default="CC-BY-4.0", help="SPDX licence id of the weights (default CC-BY-4.0)")
    p.add_argument("--cite", action="append", default=None, metavar="TEXT|DOI_OR_URL",
                   help="citation as 'text|doi' or 'text|https://…' (repeat for several; default: timm)")
    p.add_argument("--name", default=None, help="the package's name")
    p.add_argument("--sample", default=None, help="image for the test tensors and cover (default: a fitting sample)")
    p.add_argument("--value-range", type=float, default=255.0,
                   help="range of raw input values for 'meanstd' models (255 for 8-bit images)")
    p.set_defaults(func=run)


def _cite(entries: list[str] | None) -> list[dict[str, str]] | None:
    from ..core.errors import CellclassError

    if not entries:
        return None
    out = []
    for e in entries:
        text, _, ref = e.partition("|")
        if not text.strip() or not ref.strip():
            raise CellclassError(f"--cite {e!r} needs a text and a DOI or URL", "write it as 'text|10.1234/abcd' or 'text|https://…'")
        key = "url" if ref.strip().startswith(("http://", "https://")) else "doi"
        out.append({"text": text.strip(), key: ref.strip()})
    return out


def run(args: argparse.Namespace) -> int:
    from ..core.explain.cover import gradcam_map
    from ..core.models.bioimageio_export import export_bioimageio
    from ..core.models.modelfile import load_model

    model = args.model
    if model == "default":
        from ..builtin import default_model_path

        model = str(default_model_path())
    bundle = load_model(model)
    sample = None
    if args.sample:
        from ..core.io.files import read_image
        from ..core.io.images import to_canonical, value_max_of

        img = read_image(args.sample)
        sample = (to_canonical(img.data, img.channel_axis, bundle.in_chans, img.rgb), value_max_of(img.data.dtype), args.sample)
    out = export_bioimageio(bundle, args.out, authors=args.author or ("napari-cellclass user",), license=args.license,
                            cite=_cite(args.cite), name=args.name, sample=sample, explainer=gradcam_map,
                            value_range=args.value_range)
    print(out)
    return 0
