"""Fine-tune verdicts with their uncertainty: counts and a Wilson 95 % interval.

"50 % → 100 %" from 6 held-out labels says little; the same line with "3/6 → 6/6,
95 % CI 19–81 % → 61–100 %" and a warning says how little.
"""

from __future__ import annotations

import math

#: below this many judged labels the verdict carries a warning
FEW_LABELS = 30


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes out of ``n`` (95 % by default)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_line(before: float | None, after: float | None, n: int) -> str:
    """``k/n (CI) → k/n (CI)`` for two accuracies judged on the same ``n`` labels, with
    a warning when ``n`` is small or the intervals overlap."""
    if before is None or after is None or n <= 0:
        return "accuracy: not measured (no held-out labels)"
    kb, ka = round(before * n), round(after * n)
    (lb, hb), (la, ha) = wilson(kb, n), wilson(ka, n)
    text = (f"accuracy {kb}/{n} ({100 * lb:.0f}–{100 * hb:.0f} %) → "
            f"{ka}/{n} ({100 * la:.0f}–{100 * ha:.0f} %, 95 % CI)")
    if n < FEW_LABELS:
        text += f" — only {n} label(s) judged: label more before trusting the change"
    elif la <= hb and lb <= ha:
        text += " — the intervals overlap: the change may be chance"
    return text


def per_class_rows(before: dict | None, after: dict | None) -> list[dict]:
    """One row per class for the dock's table: support and precision, recall and F1
    before → after (sklearn's, from ``core.evaluation.metrics``), on the same labels."""
    b, a = (before or {}).get("per_class") or {}, (after or {}).get("per_class") or {}
    rows = []
    for cls in a or b:
        pb, pa = b.get(cls) or {}, a.get(cls) or {}
        rows.append({"class": cls, "support": int(pa.get("support", pb.get("support", 0)) or 0),
                     **{m: (pb.get(m), pa.get(m)) for m in ("precision", "recall", "f1")}})
    return rows


def confusion(before: dict | None, after: dict | None) -> tuple[list[str], list[str], list[list[tuple[int, int]]]] | None:
    """(true classes, predicted columns, cells of (before, after) counts), or None when
    not measured.  A multi-label matrix has a last "none predicted" column."""
    cb, ca = (before or {}).get("confusion_matrix"), (after or {}).get("confusion_matrix")
    classes = list((after or {}).get("classes") or (before or {}).get("classes") or [])
    if not ca or not classes:
        return None
    cb = cb if cb and len(cb) == len(ca) and len(cb[0]) == len(ca[0]) else [[0] * len(r) for r in ca]
    cols = classes + (["none"] if len(ca[0]) == len(classes) + 1 else [])
    cells = [[(int(x), int(y)) for x, y in zip(rb, ra)] for rb, ra in zip(cb, ca)]
    return classes[:len(ca)], cols, cells
