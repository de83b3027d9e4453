"""A training run whose loss became NaN or infinite has diverged: stop it, say so.

Without this check ``--lr 1e30`` trains to loss NaN, keep-best records the NaN epoch
as "best" (nothing compares smaller than NaN, and the first epoch is always kept)
and the CLI saves a model whose every prediction is NaN.  A non-finite training or
validation loss ends the run with :class:`TrainingDiverged` instead; nothing is
returned, so nothing can be saved.
"""

from __future__ import annotations

import math

from ..errors import CellclassError


class TrainingDiverged(CellclassError):
    """The loss became NaN or infinite; the weights are unusable."""


def check_loss(value: float | None, what: str, epoch: int, lr: float | None = None, *,
               validation: float | None = None) -> None:
    """Raise :class:`TrainingDiverged` when ``value`` (or the ``validation`` loss) is NaN or infinite."""
    if validation is not None and not math.isfinite(validation):
        value, what = validation, "validation loss"
    if value is None or math.isfinite(value):
        return
    at = f" (learning rate {lr:g})" if lr is not None else ""
    raise TrainingDiverged(
        f"training diverged: the {what} became {value} in epoch {epoch}{at}; no model was kept",
        "lower the learning rate (--lr) or check the images for NaN/infinite values, then train again",
    )
