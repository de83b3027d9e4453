"""Training options shared by the commands that train (`cellclass train`, `cellclass cv`):
one definition, so a recipe tried in one works in the other."""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

from ._common import channel_axis


def set_option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (VALUE in JSON), got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        # a bare word such as adamw or plateau; anything else was meant as JSON and is broken
        if not re.fullmatch(r"[A-Za-z_][\w.-]*", raw.strip()):
            raise argparse.ArgumentTypeError(f"--set {key.strip()}: {raw!r} is not valid JSON "
                                             "(quote strings inside objects, e.g. 'augment={\"hflip\": true}')") from None
        value = raw
    return key.strip(), value


def hidden_widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected widths like 512,256, got {text!r}") from None
    if any(w < 1 for w in widths):
        raise argparse.ArgumentTypeError(f"hidden widths must be positive, got {text!r}")
    return widths


def add_train_options(p: argparse.ArgumentParser, resume: bool = False) -> None:
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--preset", help="a study preset (`cellclass archs` lists them): architecture, preprocessing and recipe")
    what.add_argument("--arch", help="an architecture name (`cellclass archs`; any timm model name works)")
    if resume:
        what.add_argument("--resume", metavar="MODEL",
                          help="continue training a saved model (.safetensors), or fine-tune a bioimage.io package "
                               "(.zip or rdf.yaml) with state-dict weights of a timm architecture")
    p.add_argument("--epochs", type=int, default=None, help="epochs (per stage for two-stage presets)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="learning rate")
    p.add_argument("--input-size", type=int, nargs="+", default=None, metavar="PX", help="network input: S or H W")
    p.add_argument("--normalization", choices=("image_std", "dataset", "percentile", "meanstd"), default=None,
                   help="intensity policy of a new --arch model: image_std (default: per image and channel, any "
                   "dtype or range), dataset (the training set's per-channel statistics: keeps absolute "
                   "brightness), percentile, meanstd (ImageNet after the pixel type's range)")
    p.add_argument("--val-fraction", type=float, default=None,
                   help="share of each training part held out for validation (early stopping, keep-best)")
    p.add_argument("--test-fraction", type=float, default=None,
                   help="share held out as a test set, scored once on the final model (studies 2, 3, 5: 0.1-0.2); "
                   "0 for none (default: the preset's)")
    p.add_argument("--freeze-blocks", type=int, default=None, metavar="N",
                   help="freeze the backbone's stem and first N blocks/stages (replaces the preset's freeze fraction)")
    p.add_argument("--pool", choices=("avg", "max"), default=None, help="head: global pooling (new models)")
    p.add_argument("--dropout", type=float, default=None, metavar="P", help="head: dropout before the output layer")
    p.add_argument("--hidden", type=hidden_widths, default=None, metavar="W[,W...]",
                   help="head: hidden dense ReLU layers, e.g. 512,256 ('' for none)")
    p.add_argument("--hidden-dropout", type=float, default=None, metavar="P", help="head: dropout before each hidden layer")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, mps (default: auto)")
    pre = p.add_mutually_exclusive_group()
    pre.add_argument("--pretrained", dest="pretrained", action="store_true", default=None,
                     help="start from ImageNet weights (offline where the package ships them)")
    pre.add_argument("--no-pretrained", dest="pretrained", action="store_false", help="random initialisation")
    p.add_argument("--weights", default=None, metavar="FILE", help="initial weights: timm state dict or another model file")
    p.add_argument("--multi-label", action="store_true", default=None, help="treat the data as multi-label")
    p.add_argument("--class-balance", choices=("none", "weights", "sampler"), default=None,
                   help="weight the loss or the sampling by inverse class frequency")
    p.add_argument("--channel-axis", type=channel_axis, default="auto", metavar="AXIS",
                   help="axis holding the channels in the images: an integer, 'auto' or 'none'")
    p.add_argument("--set", dest="sets", type=set_option, action="append", default=[], metavar="KEY=JSON",
                   help='any training recipe field, e.g. --set schedule=cosine --set \'augment={"hflip": true}\'')


def train_request(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """(BuildOptions, recipe field overrides) from the parsed flags: what ``core.training.train`` takes."""
    from ..core.errors import CellclassError
    from ..core.training.options import BuildOptions

    recipe: dict[str, Any] = dict(args.sets)
    for name in ("epochs", "batch_size", "lr", "val_fraction", "test_fraction", "freeze_blocks"):
        value = getattr(args, name)
        if value is not None:
            recipe[name] = value
    head = {k: getattr(args, k) for k in ("pool", "dropout", "hidden", "hidden_dropout") if getattr(args, k) is not None}
    size = None
    if args.input_size is not None:
        if len(args.input_size) not in (1, 2):
            raise CellclassError(f"--input-size takes 1 or 2 numbers, got {len(args.input_size)}")
        size = tuple(args.input_size * 2 if len(args.input_size) == 1 else args.input_size)
    build = BuildOptions(input_size=size, pretrained=args.pretrained, weights=args.weights, multi_label=args.multi_label,
                         class_balance=args.class_balance or "none", normalization=args.normalization,
                         head=head or None)  # laid over the architecture's or preset's own head
    return build, recipe
