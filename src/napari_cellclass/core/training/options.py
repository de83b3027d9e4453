"""The typed request a training run starts from: :class:`BuildOptions` for a new
model, a :class:`~core.presets.recipe.TrainRecipe` for how to train it.

``train(**kwargs)`` keeps its keyword interface for the API; :func:`split_options`
turns those keywords into the two typed values once, at the entry, with one set of
rules, so the CLI, the fine-tune panel and the API all reach the loop the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any

from ..errors import CellclassError
from ..models.heads import HeadSpec
from ..presets.recipe import ARCH_RECIPE, TrainRecipe
from ..presets.studies import PRESETS, Preset
from .optim import recipe_with

CLASS_BALANCE = ("none", "weights", "sampler")


@dataclass(frozen=True)
class BuildOptions:
    """How to build (or adapt) the model a run trains; ``None`` means the preset's or architecture's choice."""

    input_size: tuple[int, int] | None = None
    pretrained: bool | None = None
    weights: str | os.PathLike | None = None
    multi_label: bool | None = None
    output: str | None = None
    class_balance: str = "none"
    head: HeadSpec | dict[str, Any] | None = None
    #: intensity policy of a new architecture-name model (core.training.intensity); None: per-image standardisation
    normalization: str | None = None

    def __post_init__(self) -> None:
        if self.class_balance not in CLASS_BALANCE:
            raise CellclassError(f"unknown class_balance {self.class_balance!r}", "use 'none', 'weights' or 'sampler'")
        if self.input_size is not None:
            object.__setattr__(self, "input_size", (int(self.input_size[0]), int(self.input_size[-1])))


BUILD_OPTIONS = tuple(f.name for f in fields(BuildOptions))


def split_options(build: BuildOptions | None, overrides: dict[str, Any]) -> tuple[BuildOptions, dict[str, Any]]:
    """(build options, recipe overrides) from ``train``'s keywords; an explicit ``build`` is laid under them."""
    given = {k: overrides[k] for k in overrides if k in BUILD_OPTIONS}
    if given.get("class_balance") is None:
        given.pop("class_balance", None)
    rest = {k: v for k, v in overrides.items() if k not in BUILD_OPTIONS}
    opts = replace(build or BuildOptions(), **given)
    recipe_with(TrainRecipe(), rest)  # bad option names and values fail before any data is read
    return opts, rest


def base_recipe(
    model_preset: Preset | None, preset: str | None = None, recipe: TrainRecipe | None = None
) -> TrainRecipe:
    """The recipe a run starts from: the one given, else the named preset's, else that of the
    preset the model came from, else the generic default."""
    if preset is not None and preset not in PRESETS:
        raise CellclassError(f"unknown preset {preset!r}", f"presets: {', '.join(PRESETS)}")
    if recipe is not None:
        return recipe
    if preset is not None:
        return PRESETS[preset].train
    return model_preset.train if model_preset is not None else ARCH_RECIPE


def preset_of(bundle: Any) -> Preset | None:
    """The preset a bundle was built from (its provenance says), if it is one we know."""
    return PRESETS.get((getattr(bundle, "provenance", None) or {}).get("preset") or "")
