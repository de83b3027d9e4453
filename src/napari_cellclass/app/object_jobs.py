"""Object mode of the Classify dock, without Qt or napari: the job and its table.

:func:`object_job` classifies every object of a Labels layer's data on its image
layer's data (captured on the main thread), yields the rows batch by batch for the
progress bar and Cancel, and returns an :class:`ObjectOutcome`.  :func:`write_object_csv`
writes the same columns as ``cellclass predict --objects``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.progress import Progress
from .jobs import InputOptions, load_bundle

if TYPE_CHECKING:
    from .session import Session


@dataclass
class ObjectRequest:
    """What the job needs, captured from the layers on the main thread."""

    image: Any  # the image layer's data
    image_name: str
    rgb: bool | None
    labels: Any  # the Labels layer's data
    labels_name: str
    margin: int = 0
    mask: bool = False


@dataclass
class ObjectOutcome:
    request: ObjectRequest
    table: Any  # core.inference.objects.ObjectTable
    classes: list[str]
    model: str

    def columns(self) -> dict[str, np.ndarray]:
        """The table's columns plus ``index`` (= label), which napari's Labels ``features`` key on."""
        cols = self.table.columns()
        return {"index": cols["label"].copy(), **cols}


def object_job(session: Session, request: ObjectRequest, batch_size: int = 32,
               options: InputOptions | None = None) -> Generator[Progress, None, ObjectOutcome]:
    """Classify every object of ``request.labels``; each Progress carries that batch's rows."""
    from ..core.inference.objects import predict_objects_steps

    options = options or InputOptions()
    bundle, model = yield from load_bundle(session)
    source = _Source(request.image, request.image_name, request.rgb)
    table = yield from predict_objects_steps(bundle, source, request.labels, request.margin, request.mask,
                                             options=options.run(session, batch_size), name=request.image_name,
                                             label_name=request.labels_name)
    return ObjectOutcome(request, table, list(bundle.classes), model)


class _Source:
    """An image as :func:`core.inference.predict.resolve_source` reads a layer: data, name, rgb."""

    def __init__(self, data: Any, name: str, rgb: bool | None) -> None:
        self.data, self.name, self.rgb = data, name, rgb


def write_object_csv(outcome: ObjectOutcome, path: str | Path) -> Path:
    """The per-object rows as ``cellclass predict --objects`` writes them, atomically."""
    from ..core.atomicfile import describe_os_error, write_atomic
    from ..core.errors import CellclassError
    from .tables import ood_cells

    target = Path(path)
    if target.suffix.lower() != ".csv":
        target = target.with_name(target.name + ".csv")
    text = io.StringIO(newline="")
    w = csv.writer(text)
    w.writerow(["path", "frame", "label", "centroid_y", "centroid_x", "area", "predicted_class", "confidence",
                *[f"p_{c}" for c in outcome.classes], "ood_score", "ood", "model"])
    for r in outcome.table.rows:
        w.writerow([outcome.request.image_name, r.box.frame, r.box.label, f"{r.box.centroid[0]:.2f}",
                    f"{r.box.centroid[1]:.2f}", r.box.area, r.predicted_class, f"{r.confidence:.6f}",
                    *[f"{float(p):.6f}" for p in r.probs], *ood_cells(r.ood_score, r.ood), outcome.model])
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, text.getvalue().encode("utf-8"))
    except OSError as err:
        raise CellclassError(f"cannot write {target}: {describe_os_error(err)}", "choose another file or folder") from err
    return target


@dataclass
class ObjectMaps:
    request: ObjectRequest
    frame: int
    maps: np.ndarray  # (H, W) on the image grid
    method: str


def explain_objects_job(session: Session, request: ObjectRequest, method: str = "gradcam", frame: int = 0,
                        options: InputOptions | None = None) -> Generator[Progress, None, ObjectMaps]:
    """Each object's map of frame ``frame``, pasted back at its place (core.explain.objects)."""
    from ..core.explain.objects import explain_objects

    options = options or InputOptions()
    bundle, _ = yield from load_bundle(session)
    yield Progress(0, 0, message=f"explaining the objects of '{request.labels_name}'")
    source = _Source(request.image, request.image_name, request.rgb)
    maps = explain_objects(bundle, source, request.labels, request.margin, request.mask, method, frame=frame,
                           options=options.run(session))
    return ObjectMaps(request, frame, maps, method)
