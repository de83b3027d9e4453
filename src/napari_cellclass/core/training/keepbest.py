"""Which epoch's weights a run keeps, and why — said in the output and the provenance.

Keep-best used to restore the epoch with the lowest validation loss whatever the
size of the validation split.  On a split of a few dozen images the epoch-to-epoch
differences are mostly noise, and a from-scratch run of 8 epochs could end with
epoch 2's weights: the learning of six epochs thrown away on a coin toss.

Rule: the last epoch is kept unless an earlier one is better *beyond the noise* of
the split.  Both epochs were scored on the same images, so the test is paired: the
per-image loss differences (last − best) must average more than ``Z`` standard
errors above zero.  A large split tells small real differences apart and keeps the
best epoch as before (the studies' recipes: 124+ validation images); a split of 5
images rarely can; no split at all keeps the last epoch (the training loss of an
augmented epoch is no evidence that an earlier epoch generalises better).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

Z = 2.0  # one-sided ~97.7 %: restoring an earlier epoch needs clear evidence


@dataclass(frozen=True)
class Kept:
    epoch: int
    restored: bool  # True: an earlier epoch's weights were put back
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {"epoch": self.epoch, "restored": self.restored, "reason": self.reason}


def choose(best_epoch: int | None, best_losses: torch.Tensor | None, last_epoch: int,
           last_losses: torch.Tensor | None, keep_best: bool) -> Kept:
    """Keep the last epoch or restore ``best_epoch`` (lowest validation loss), given
    both epochs' per-image validation losses on the same images."""
    if not keep_best:
        return Kept(last_epoch, False, "keep-best is off: the last epoch")
    if last_losses is None or last_losses.numel() == 0 or best_losses is None:
        return Kept(last_epoch, False, "no validation images: the last epoch (training loss is no evidence "
                                       "that an earlier epoch generalises better)")
    if best_epoch is None or best_epoch == last_epoch:
        return Kept(last_epoch, False, f"the last epoch had the lowest validation loss ({float(last_losses.mean()):.4g})")
    n = int(last_losses.numel())
    d = (last_losses.double() - best_losses.double())
    mean = float(d.mean())
    se = float(d.std(unbiased=True)) / math.sqrt(n) if n > 1 else math.inf
    detail = (f"epoch {best_epoch}'s validation loss {float(best_losses.mean()):.4g} vs the last epoch's "
              f"{float(last_losses.mean()):.4g}, paired difference {mean:.3g} ± {se:.2g} (SE) over {n} images")
    if mean > Z * se:
        return Kept(best_epoch, True, f"restored epoch {best_epoch}: better beyond the noise ({detail})")
    return Kept(last_epoch, False, f"kept the last epoch {last_epoch}: {detail} is within the noise of the split")


__all__ = ["Kept", "choose", "Z"]
