"""``reliability.png`` for `cellclass report`: accuracy against confidence per bin.

Both the raw probabilities and those after the model's temperature are drawn
(15 equal-width bins, :mod:`core.evaluation.calibration`); a calibrated model's
points sit on the diagonal.  Bins with no image are left out, and each point's
size follows its image count, so a bin of two images does not look like evidence.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import calibration


def draw_reliability(ax: Any, probs_before: np.ndarray, probs_after: np.ndarray, y: np.ndarray,
                     temperature: float) -> None:
    """Reliability diagram of the raw and the temperature-scaled probabilities (N, K) for classes ``y``
    on the matplotlib axes ``ax`` (core.evaluation.report makes and saves the figure)."""
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfect calibration")
    runs: list[tuple[str, np.ndarray, str]] = [("raw", probs_before, "tab:red")]
    if temperature != 1.0:
        runs.append((f"temperature {temperature:.3g}", probs_after, "tab:blue"))
    for name, p, color in runs:
        rel: dict[str, Any] = calibration.reliability(p, y)
        conf, acc, count = (np.asarray(rel[k], float) for k in ("confidence", "accuracy", "count"))
        keep = count > 0
        ax.plot(conf[keep], acc[keep], "-", color=color, lw=1)
        ax.scatter(conf[keep], acc[keep], s=20 + 200 * count[keep] / max(1.0, count.sum()), color=color,
                   label=f"{name}: ECE {rel['ece']:.3f}, Brier {calibration.brier(p, y):.3f}")
    ax.set_xlim(-0.02, 1.02)  # a bin at accuracy 0 or 1 stays visible
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"confidence (top-class probability, {calibration.N_BINS} bins)")
    ax.set_ylabel("accuracy in the bin")
    ax.set_title(f"reliability ({len(y)} images)")
    ax.legend(fontsize=8, loc="upper left")
