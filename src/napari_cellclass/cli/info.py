"""`cellclass info MODEL` and `cellclass archs`."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show a model file's classes, architecture, preprocessing and provenance")
    p.add_argument("model", help="model file (.safetensors) or bioimage.io package (.zip, rdf.yaml)")
    p.add_argument("--json", action="store_true", help="print the full metadata as JSON")
    p.set_defaults(func=run_info)

    a = sub.add_parser("archs", help="list architectures and study presets")
    a.add_argument("--json", action="store_true", help="print as JSON")
    a.set_defaults(func=run_archs)


def run_info(args: argparse.Namespace) -> int:
    from ..core.models.modelfile import load_model

    bundle = load_model(args.model)
    print(json.dumps(bundle.metadata(), indent=2) if args.json else bundle.card())
    return 0


def run_archs(args: argparse.Namespace) -> int:
    from ..core.models.registry import list_architectures
    from ..core.presets.studies import list_presets

    archs, presets = list_architectures(), list_presets()
    if args.json:
        print(json.dumps({"architectures": archs, "presets": presets}, indent=2))
        return 0
    print("Architectures (any other timm model name works too):")
    for a in archs:
        size = "x".join(map(str, a["input_size"]))
        print(f"  {a['name']:<24} {size:>8}  {'pretrained' if a['pretrained_available'] else 'scratch':<10}  {a['description']}")
    print("\nPresets (the five studies):")
    for p in presets:
        print(f"  {p['name']:<36} {p['study']}\n      {p['description']}\n      architecture: {p['architecture']}\n      paper: {p['reported']}")
    return 0
