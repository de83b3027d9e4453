"""Errors as napari notifications: the text a user sees, and the log for the unexpected."""

from __future__ import annotations

import logging

from napari.utils.notifications import show_error

logger = logging.getLogger("napari_cellclass")


def error_message(err: BaseException) -> str:
    """The text a user sees for ``err``."""
    from ..core.errors import CellclassError
    from ..core.io.text import printable  # messages quote file names and model metadata

    if isinstance(err, CellclassError):
        return printable(err, keep="\n")
    return f"napari-cellclass: unexpected {err.__class__.__name__}: {printable(err, keep='')} (details in the log)"


def notify_error(err: BaseException) -> None:
    from ..core.errors import CellclassError

    if not isinstance(err, CellclassError):
        logger.error("napari-cellclass job failed", exc_info=(type(err), err, err.__traceback__))
    show_error(error_message(err))
