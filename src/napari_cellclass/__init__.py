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
    "ModelBundle": ".core.models.bundle",
    "build_model": ".core.presets.factory",
    "save_model": ".core.models.modelfile",
    "load_model": ".core.models.modelfile",
    "preprocess": ".core.inference.predict",
    "predict": ".core.inference.predict",
    "predict_records": ".core.inference.predict",
    "predict_members": ".core.inference.predict",
    "predict_map": ".core.inference.tiling",
    "predict_objects": ".core.inference.objects",
    "predict_objects_steps": ".core.inference.objects",
    "ObjectTable": ".core.inference.objects",
    "RunOptions": ".core.inference.options",
    "tile_grid": ".core.inference.tiling",
    "explain": ".core.explain",
    "explain_batch": ".core.explain",
    "explain_objects": ".core.explain.objects",
    "train": ".core.training.api",
    "fit": ".core.training.api",
    "load_dataset": ".core.data",
    "evaluate": ".core.evaluation.evaluate",
    "cross_validate": ".core.training.crossval",
    "write_report": ".core.evaluation.report",
    "FineTuneOptions": ".core.training.finetune",
    "finetune": ".core.training.finetune",
    "finetune_steps": ".core.training.finetune",
    "list_architectures": ".core.models.registry",
    "list_presets": ".core.presets.studies",
    "get_preset": ".core.presets.studies",
    "read_image": ".core.io.files",
    "CellclassError": ".core.errors",
    "AnnotationStore": ".core.annotations",
    "open_annotations": ".core.annotations",
    "training_samples": ".core.annotations",
    "export_dataset": ".core.annotations",
    "FolderStack": ".core.io.gallery",
    "rank_uncertain": ".core.annotations.active",
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
