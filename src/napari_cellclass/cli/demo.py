"""`cellclass demo [--screenshot PNG]`: the viewer with everything already run.

The launcher imports Qt, so it lives in :mod:`napari_cellclass.demo` and is imported
only when the command runs; the CLI itself never imports Qt.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="open napari with a sample image, the built-in model, and a classification and Grad-CAM already run",
    )
    p.add_argument("--screenshot", metavar="PNG", default=None,
                   help="render the window to this PNG once both runs have finished, then exit "
                        "(without a screen: xvfb-run -a cellclass demo --screenshot demo.png)")
    p.add_argument("--timeout", type=float, default=600.0, metavar="S",
                   help="with --screenshot: give up after this many seconds (default: 600)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    return run_demo(args.screenshot, args.timeout)
