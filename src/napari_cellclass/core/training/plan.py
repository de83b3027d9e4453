"""Everything a run settles before the first step: the model to train, its recipe, and
the training / validation / test splits (:class:`TrainPlan`)."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Dataset, load_dataset, stratified_split
from ..errors import CellclassError, DataError
from ..models.bundle import ModelBundle
from ..models.feature_store import copy_network
from ..models.heads import n_outputs
from ..models.modelfile import load_model
from ..presets.factory import build_model
from ..presets.recipe import TrainRecipe
from ..presets.studies import PRESETS, Preset
from ..models.registry import arch_entry
from .intensity import default_preprocess
from .optim import classifiers, recipe_with
from .options import BuildOptions, base_recipe, preset_of
from .prep import head_for, hold_out_test, val_share_of_rest


@dataclass
class TrainPlan:
    bundle: ModelBundle  # a new bundle or a deep copy: the caller's is never changed
    recipe: TrainRecipe
    build: BuildOptions
    started_from: str
    data: Dataset  # everything labelled that was given (train + val + test unless val_data was separate)
    train: Dataset
    val: Dataset
    test: Dataset | None
    separate_val: bool  # the caller passed val_data


def make_plan(
    model: Any,
    data: Any,
    *,
    classes: list[str] | None,
    val_data: Any,
    recipe: TrainRecipe | None,
    preset: str | None,
    build: BuildOptions,
    overrides: dict[str, Any],
    seed: int,
    channel_axis: Any,
) -> TrainPlan:
    ds = load_dataset(data, classes, channel_axis=channel_axis, multi_label=build.multi_label)
    if len(ds) == 0:
        raise DataError("the training data set is empty", "add labelled images")
    bundle, model_preset, started_from = _resolve_model(model, ds, build)
    r = recipe_with(base_recipe(model_preset, preset, recipe), overrides)
    # a caller passing val_data chose its own evaluation split (the viewer's fine-tuning, k-fold):
    # the preset's test share then applies only when asked for by name
    test_fraction = r.test_fraction if val_data is None or "test_fraction" in overrides else 0.0
    rest_ds, test_ds = hold_out_test(ds, test_fraction, seed)  # never trained or selected on
    if val_data is not None:
        val_ds = load_dataset(
            val_data,
            bundle.classes if classes is None else classes,
            channel_axis=channel_axis,
            multi_label=ds.multilabel,
        )
        train_ds = rest_ds
    else:
        tr, va = stratified_split(rest_ds.labels, val_share_of_rest(r.val_fraction, test_fraction), seed)
        train_ds, val_ds = rest_ds.subset(tr), rest_ds.subset(va)
    if len(train_ds) == 0:
        raise DataError("no images left for training after the validation split", "lower val_fraction or add images")
    unknown = sorted(set(val_ds.classes) - set(bundle.classes))
    if unknown:
        raise DataError(f"validation data has classes {unknown} the model does not know")
    return TrainPlan(bundle, r, build, started_from, ds, train_ds, val_ds, test_ds, val_data is not None)


def targets(ds: Dataset, classes: list[str]) -> np.ndarray:
    """(N, K) targets in the model's class order (the data may use a subset, in any order)."""
    y = np.zeros((len(ds), len(classes)), np.float32)
    cols = [classes.index(c) for c in ds.classes]
    y[:, cols] = ds.targets()
    return y


def copy_bundle(b: ModelBundle) -> ModelBundle:
    """A deep copy with its own lock (the lock itself cannot be copied)."""
    with b.lock:
        net = copy_network(b.network)  # a deep copy that keeps the known weights hash (feature cache)
    return ModelBundle(
        net,
        list(b.classes),
        b.output,
        b.in_chans,
        b.preprocess,
        b.arch,
        list(b.channel_names),
        None if b.thresholds is None else list(b.thresholds),
        copy.deepcopy(b.provenance),
    )


def _output_for(preset: Preset | None, n_classes: int, multilabel: bool, requested: str | None) -> str:
    if requested:
        return requested
    if multilabel:
        return "sigmoid"
    if preset is not None and preset.output == "binary" and n_classes == 2:
        return "binary"
    return "softmax"


def _resolve_model(model: Any, ds: Dataset, build: BuildOptions) -> tuple[ModelBundle, Preset | None, str]:
    """(bundle to train, its preset if any, where it came from)."""
    # a bioimage.io package: its timm network becomes a model file's; TorchScript only is refused up front
    from ..models.bioimageio_import import is_package
    from ..models.bioimageio_trainable import trainable_bundle

    if isinstance(model, ModelBundle):
        return _adapt(copy_bundle(trainable_bundle(model)), ds, build), preset_of(model), "bundle"
    if isinstance(model, (str, os.PathLike)) and (str(model).endswith(".safetensors") or is_package(Path(model))):
        b = trainable_bundle(load_model(model))
        return _adapt(b, ds, build), preset_of(b), f"model file {model}"
    if not isinstance(model, str):
        raise CellclassError(
            f"cannot train a {type(model).__name__}",
            "pass a preset or architecture name, a ModelBundle or a model file",
        )
    preset = PRESETS.get(model)
    output = _output_for(preset, len(ds.classes), ds.multilabel, build.output)
    # an architecture name gets a dtype- and range-free intensity policy (training.intensity);
    # a preset keeps its paper's preprocessing
    if preset and build.normalization is not None:
        raise CellclassError("normalization= applies to an architecture name; a preset keeps its paper's",
                             "leave normalization out, or train from the preset's architecture name")
    pre = None if preset else default_preprocess(arch_entry(model).input_size, build.normalization)
    b = build_model(model, classes=ds.classes, in_chans=ds.in_chans, pretrained=build.pretrained,
                    weights=build.weights, output=output, head=head_for(model, build.head), input_size=build.input_size,
                    preprocess=pre)
    return b, preset, f"preset {model}" if preset else f"architecture {model}"


def _adapt(b: ModelBundle, ds: Dataset, build: BuildOptions) -> ModelBundle:
    """Fit a loaded bundle to the data: same classes (any order) keep the head; others get a new one."""
    if build.input_size is not None and tuple(build.input_size) != tuple(b.input_size):
        raise CellclassError(
            f"input size {tuple(build.input_size)} differs from the model's {b.input_size}",
            "a model continues at its own input size; leave input_size out",
        )
    if build.weights is not None:
        raise CellclassError("weights= applies to a new model, not to one being fine-tuned")
    if build.normalization is not None and build.normalization != b.preprocess.normalization.method:
        raise CellclassError(
            f"normalization={build.normalization!r} differs from the model's {b.preprocess.normalization.method!r}",
            "a model continues with its own intensity policy; leave normalization out",
        )
    if build.head is not None:
        raise CellclassError(
            "head options apply to a new model, not to one being fine-tuned",
            "start from a preset or architecture name to choose the head",
        )
    if set(ds.classes) <= set(b.classes) and ds.multilabel == b.multilabel:
        return b
    output = _output_for(None, len(ds.classes), ds.multilabel, build.output)
    outputs = n_outputs(len(ds.classes), output)
    for net in classifiers(b.network):
        net.reset_classifier(outputs)
    if hasattr(b.network, "output"):
        b.network.output = output
    b.classes, b.output, b.thresholds = list(ds.classes), output, None
    b.provenance["new_head"] = f"classifier replaced for classes {ds.classes}"
    return b
