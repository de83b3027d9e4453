"""Training and fine-tuning: ``train()`` yields progress, ``fit()`` just returns the model.

>>> for event in (gen := train("scaffoldnet", "data/brightfield", epochs=8)):   # doctest: +SKIP
...     print(event.line())
>>> bundle = fit("senescence-ensemble", "data/nlo", pretrained=False)           # doctest: +SKIP

``model`` is a preset name (architecture + preprocessing + the study's recipe), an
architecture name, a :class:`ModelBundle` or a model file — the last two are
fine-tuned on a deep copy, so the caller's bundle never changes.  Any
:class:`~core.presets.TrainRecipe` field can be overridden by keyword; so can
``input_size``, ``pretrained``, ``weights``, ``multi_label``, ``output`` and
``class_balance`` ('none' | 'weights' | 'sampler').  ``stop.set()`` ends the run
at the next step and returns the best model so far.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from dataclasses import asdict
from typing import Any

import torch

from ..device import resolve_device
from ..models.bundle import ModelBundle
from ..presets.recipe import TrainRecipe
from .distributed import context, setup
from .events import TrainEvent, TrainResult
from .fitting import fit_network
from .options import BUILD_OPTIONS, BuildOptions, split_options
from .plan import make_plan
from .record import final_event, finish, provenance


def _stop_fn(stop: threading.Event | Callable[[], bool] | None) -> Callable[[], bool]:
    if stop is None:
        return lambda: False
    if hasattr(stop, "is_set"):
        return stop.is_set  # type: ignore[union-attr]
    return stop  # type: ignore[return-value]


def train(
    model: Any,
    data: Any,
    *,
    classes: list[str] | None = None,
    val_data: Any = None,
    recipe: TrainRecipe | None = None,
    preset: str | None = None,
    device: str | torch.device = "auto",
    stop: threading.Event | Callable[[], bool] | None = None,
    seed: int = 0,
    channel_axis: Any = "auto",
    build: BuildOptions | None = None,
    **overrides: Any,
) -> Generator[TrainEvent, None, TrainResult]:
    """Train or fine-tune; yields :class:`TrainEvent` and returns a :class:`TrainResult`.

    Keywords that are :class:`BuildOptions` fields shape a new model; every other
    keyword replaces a field of the recipe (``recipe``, else the preset's).  The
    hybrid preset (``…:hybrid-svm``) is fitted, not trained: it goes to
    ``training.hybrid.train_hybrid``, which has this signature and these events.
    """
    common = dict(classes=classes, val_data=val_data, recipe=recipe, preset=preset, channel_axis=channel_axis)
    if isinstance(model, str) and model.endswith(":hybrid-svm"):
        from .hybrid import is_hybrid_preset, train_hybrid

        if is_hybrid_preset(model):
            given = {} if build is None else {k: v for k, v in asdict(build).items() if v not in (None, "none")}
            return (yield from train_hybrid(model, data, device=device, stop=stop, seed=seed, **common,
                                            **{**given, **overrides}))
    t_start = time.perf_counter()
    build, overrides = split_options(build, overrides)
    ctx = context()
    dev = setup(ctx, resolve_device(device))  # under torchrun: join the process group, this rank's GPU
    should_stop = _stop_fn(stop)
    torch.manual_seed(seed)  # the random initialisation of new layers is part of the seed
    plan = make_plan(model, data, build=build, overrides=overrides, seed=seed, **common)
    outcome, data_t = yield from fit_network(plan, dev, should_stop, seed, ctx)
    test = finish(plan, outcome, data_t, dev)
    plan.bundle.provenance = provenance(
        plan, outcome, test, source=data, seed=seed, dev=dev, ctx=ctx, time_s=time.perf_counter() - t_start
    )
    yield final_event(outcome)
    return TrainResult(plan.bundle, outcome.history, outcome.cancelled, outcome.stopped_early)


def fit(model: Any, data: Any, **kwargs: Any) -> ModelBundle:
    """Run :func:`train` to the end and return the trained bundle."""
    from ..progress import drain

    return drain(train(model, data, **kwargs)).bundle


__all__ = ["train", "fit", "TrainEvent", "TrainResult", "BUILD_OPTIONS", "BuildOptions"]
