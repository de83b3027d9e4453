"""Per-plane predictions as a table: rows for the viewer, the layer metadata and CSV.

Columns follow ``cellclass predict``'s CSV (``layer`` instead of ``path``), so a table
exported from the viewer and one written by the CLI read the same way.  No Qt, no
torch: rows are built in a worker thread and shown by the Classify dock.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FIXED_COLUMNS = ("layer", "frame", "predicted_class", "confidence")


from ..core.io.text import FORMULA_STARTS, safe_cell  # noqa: F401  (shared by every CSV writer)


def probability_column(class_name: str) -> str:
    return f"p_{class_name}"


@dataclass(frozen=True)
class PredictionRow:
    layer: str
    frame: int
    predicted_class: str
    confidence: float
    probs: tuple[float, ...]
    model: str
    ood_score: float | None = None  # None: the model has no OOD statistics (core.models.ood)
    ood: bool | None = None

    def values(self) -> list[Any]:
        return [self.layer, self.frame, self.predicted_class, self.confidence, *self.probs, self.ood_score, self.ood,
                self.model]


@dataclass
class PredictionTable:
    """Rows of one model (one class list); several layers may contribute."""

    classes: list[str]
    model: str
    rows: list[PredictionRow] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        return [*FIXED_COLUMNS, *[probability_column(c) for c in self.classes], "ood_score", "ood", "model"]

    def add(self, layer: str, frame: int, predicted_class: str, probs: Sequence[float] | np.ndarray,
            ood_score: float | None = None, ood: bool | None = None) -> PredictionRow:
        p = tuple(float(v) for v in np.asarray(probs, dtype=np.float64).ravel())
        if len(p) != len(self.classes):
            raise ValueError(f"{len(p)} probabilities for {len(self.classes)} classes")
        row = PredictionRow(layer, int(frame), predicted_class, max(p) if p else float("nan"), p, self.model,
                            None if ood_score is None else float(ood_score), None if ood is None else bool(ood))
        self.rows.append(row)
        return row

    def for_layer(self, layer: str) -> list[PredictionRow]:
        return [r for r in self.rows if r.layer == layer]

    def replace_layer(self, layer: str, rows: Iterable[PredictionRow]) -> None:
        """Drop earlier rows of ``layer`` (a re-run) and append the new ones."""
        self.rows = [r for r in self.rows if r.layer != layer] + list(rows)

    def records(self, layer: str | None = None) -> dict[str, list[Any]]:
        """Column name -> values, e.g. for ``pandas.DataFrame(table.records())``."""
        rows = self.rows if layer is None else self.for_layer(layer)
        return {name: [row.values()[i] for row in rows] for i, name in enumerate(self.columns)}

    def write_csv(self, path: str | os.PathLike) -> Path:
        """Write the table atomically (a crash never leaves half a CSV behind)."""
        from ..core.atomicfile import describe_os_error, write_atomic
        from ..core.errors import CellclassError

        target = Path(path)
        if target.suffix.lower() != ".csv":
            target = target.with_name(target.name + ".csv")
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow([safe_cell(c) for c in self.columns])
        for row in self.rows:
            writer.writerow([safe_cell(row.layer), row.frame, safe_cell(row.predicted_class), f"{row.confidence:.6f}",
                             *[f"{p:.6f}" for p in row.probs], *ood_cells(row.ood_score, row.ood), safe_cell(row.model)])
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target, text.getvalue().encode("utf-8"))
            _readable_like_a_new_file(target)
        except OSError as err:
            raise CellclassError(f"cannot write {target}: {describe_os_error(err)}", "choose another file or folder") from err
        return target


def ood_cells(score: float | None, flag: bool | None) -> list[str]:
    """The ood_score / ood CSV cells as ``cellclass predict`` writes them (empty without statistics)."""
    return ["", ""] if score is None else [f"{score:.4f}", "true" if flag else "false"]


def _readable_like_a_new_file(path: Path) -> None:
    # the temporary file behind an atomic write is private (0600); an exported table
    # gets the mode any new file would get
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def layer_predictions(table: PredictionTable, layer: str) -> dict[str, Any]:
    """What the Classify dock stores in ``layer.metadata['cellclass']``: the layer's
    rows as columns (a DataFrame-ready dict), the classes and the model."""
    return {
        "model": table.model,
        "classes": list(table.classes),
        "predictions": table.records(layer),
    }
