"""What a dock offers for a multiscale layer: its levels, and which one "auto" reads.

No Qt, no napari: the layer is read duck-typed (``multiscale``, ``data``, ``rgb``,
``scale``, ``units``), so this is testable without a viewer.  "auto" is what the
engine would choose (:mod:`napari_cellclass.core.inference.levels`):

* whole-image classification (and whole-image explanations) always read the
  smallest level that is at least the model's input size; no override applies;
* tiled maps and explanations read the level whose pixel size matches the model's
  recorded training pixel size.  A napari layer gives its pixel size only as its
  ``scale`` (level 0's; level k's is that times its downsampling), so when the model
  records a training pixel size and the layer's scale or units say something (not
  1 x 1 pixel), the level is chosen here by pixel size and passed to the engine as
  an explicit level; otherwise the engine's own choice (level 0) stands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

Purpose = Literal["classify", "map"]


@dataclass(frozen=True)
class LevelRow:
    index: int
    hw: tuple[int, int]
    pixel_size: tuple[float, float] | None  # in the layer's world units
    unit: str | None

    def text(self) -> str:
        size = f"{self.hw[0]}×{self.hw[1]} px"
        return f"{self.index}: {size}" + (f", {self.pixel_text()}" if self.pixel_size is not None else "")

    def pixel_text(self) -> str:
        py, px = self.pixel_size or (1.0, 1.0)
        value = f"{py:.3g}" if math.isclose(py, px, rel_tol=1e-3) else f"{py:.3g}×{px:.3g}"
        return f"pixel {value}{' ' + self.unit if self.unit else ''}"


@dataclass(frozen=True)
class LevelChoices:
    """The levels of one multiscale layer and the automatic choice for ``purpose``."""

    rows: list[LevelRow]
    purpose: Purpose
    auto: int | None  # None: known once the model is loaded
    by_pixel_size: bool = False  # auto matched the model's training pixel size to the layer's scale
    override: bool = True  # whether a level chosen by hand is used (tiled runs only)

    def auto_text(self) -> str:
        if self.auto is None:
            return "auto (chosen when the model is loaded)"
        row = self.rows[self.auto]
        why = ("model's pixel size" if self.by_pixel_size
               else "smallest ≥ model input" if self.purpose == "classify"
               else "no pixel size to match")
        detail = f", {row.pixel_text()}" if row.pixel_size is not None else ""
        return f"auto (level {row.index}{detail}: {why})"

    def level_for(self, chosen: int | None) -> int | None:
        """The level to pass to the engine for the user's ``chosen`` (None = auto)."""
        if not self.override:
            return None
        if chosen is not None:
            return chosen
        return self.auto if self.by_pixel_size else None


def _unit(layer: Any, axis: int) -> str | None:
    units = getattr(layer, "units", None)
    try:
        text = str(units[axis])
    except (TypeError, IndexError):
        return None
    return None if text in ("", "pixel", "px", "None") else text


def level_choices(layer: Any, bundle: Any | None, purpose: Purpose) -> LevelChoices | None:
    """The choices for ``layer`` (None when it is not multiscale or cannot be read)."""
    from ..core.errors import CellclassError
    from ..core.inference.levels import trained_pixel_size
    from ..core.io.images import inspect
    from ..core.io.multiscale import Pyramid

    if layer is None or not getattr(layer, "multiscale", False):
        return None
    rgb = bool(getattr(layer, "rgb", False))
    try:
        pyr = Pyramid.from_arrays(list(layer.data), str(getattr(layer, "name", "image")), rgb=rgb)
        lay, _ = inspect(pyr.levels[0].data, "auto", None, rgb, pyr.name)
    except CellclassError:
        return None
    scale = [float(s) for s in getattr(layer, "scale", [1.0] * len(lay.shape))]
    sy, sx = scale[lay.y_axis], scale[lay.x_axis]
    unit = _unit(layer, lay.y_axis)
    physical = unit is not None or (sy, sx) != (1.0, 1.0)
    rows = []
    for lvl in pyr.levels:
        hw = pyr.plane_hw(lvl.index)
        size = (sy * lvl.factor[0], sx * lvl.factor[1]) if physical else None
        rows.append(LevelRow(lvl.index, hw, size, unit))
    if bundle is None:
        return LevelChoices(rows, purpose, None, override=purpose == "map")
    if purpose == "classify":
        return LevelChoices(rows, purpose, pyr.for_classification(tuple(bundle.input_size)).index, override=False)
    trained = trained_pixel_size(bundle)
    if trained is not None and physical and trained > 0:
        best = min(rows, key=lambda r: abs(math.log(math.sqrt(r.pixel_size[0] * r.pixel_size[1]) / trained)))
        return LevelChoices(rows, purpose, best.index, by_pixel_size=True)
    return LevelChoices(rows, purpose, pyr.for_map(None, None).index)
