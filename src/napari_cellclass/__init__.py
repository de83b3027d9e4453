"""napari-cellclass: classify microscopy images with PyTorch/timm models in napari.

The Python API is importable from here; every name is loaded lazily, so importing
the package (which napari does at start-up) never imports torch or timm.

>>> from napari_cellclass import build_model, predict
>>> bundle = build_model("resnet18", classes=["a", "b"])          # doctest: +SKIP
>>> probs = predict(bundle, [image1, image2])                      # doctest: +SKIP
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from ._version import __version__

#: public name -> module that defines it (relative to this package)
_API: dict[str, str] = {
    "ModelBundle": ".core.bundle",
    "build_model": ".core.bundle",
    "save_model": ".core.bundle",
    "load_model": ".core.bundle",
    "preprocess": ".core.predict",
    "predict": ".core.predict",
    "predict_records": ".core.predict",
    "predict_members": ".core.predict",
    "predict_map": ".core.tiling",
    "tile_grid": ".core.tiling",
    "explain": ".core.explain",
    "explain_batch": ".core.explain",
    "train": ".core.train",
    "fit": ".core.train",
    "load_dataset": ".core.data",
    "evaluate": ".core.evaluate",
    "cross_validate": ".core.crossval",
    "write_report": ".core.report",
    "FineTuneOptions": ".core.finetune",
    "finetune": ".core.finetune",
    "finetune_steps": ".core.finetune",
    "list_architectures": ".core.models.registry",
    "list_presets": ".core.presets",
    "get_preset": ".core.presets",
    "read_image": ".core.imagefiles",
    "CellclassError": ".core.errors",
    "AnnotationStore": ".core.annotations",
    "open_annotations": ".core.annotations",
    "training_samples": ".core.annotations",
    "export_dataset": ".core.annotations",
    "FolderStack": ".core.gallery",
    "rank_uncertain": ".core.active",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'napari_cellclass' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
