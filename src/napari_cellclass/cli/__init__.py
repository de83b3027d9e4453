"""The ``cellclass`` command line: the same engine as the viewer, without Qt.

Each sub-command lives in its own module of this package (``predict.py``,
``info.py`` …) exposing ``register(subparsers)``; they are discovered here, so a new
command is a new file.  Bad input ends with exit code 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import pkgutil
import sys
from importlib import import_module

from .._version import __version__

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cellclass",
        description="Classify microscopy images with PyTorch/timm models (napari-cellclass, headless).",
    )
    parser.add_argument("--version", action="version", version=f"napari-cellclass {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):  # _common, __main__ are not commands
            import_module(f"{__name__}.{info.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from ..core.errors import CellclassError

    try:
        return int(args.func(args) or EXIT_OK)
    except CellclassError as err:
        if args.debug:
            raise
        from ..core.io.text import printable

        print(f"cellclass {args.command}: error: {printable(err, keep='')}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        return EXIT_OK
    except KeyboardInterrupt:
        print(f"cellclass {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 - one readable line instead of a traceback
        if args.debug:
            raise
        from ..core.io.text import printable

        print(f"cellclass {args.command}: internal error: {err.__class__.__name__}: {printable(err, keep='')} (rerun with --debug for details)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
