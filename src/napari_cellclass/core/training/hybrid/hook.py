"""``train_hybrid``: the hybrid preset behind ``core.train.train``'s signature and
events, so `cellclass train` and the viewer's training job can run it."""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

import torch

from ...models.bundle import ModelBundle
from .fit import fit_hybrid_steps

def is_hybrid_preset(name: Any) -> bool:
    """True for presets whose 'training' is fitting PCA + SVM heads (``…:hybrid-svm``)."""
    return isinstance(name, str) and name.endswith(":hybrid-svm")


def train_hybrid(model: Any, data: Any, *, classes: list[str] | None = None, val_data: Any = None, recipe: Any = None,
                 preset: str | None = None, device: str | torch.device = "auto", stop: Any = None, seed: int = 0,
                 channel_axis: Any = "auto", **overrides: Any) -> Generator[Any, None, Any]:
    """``core.train.train``'s signature and events for the hybrid preset.

    Yields ``TrainEvent``s (features extracted, SVMs fitted, validation scored) and
    returns a ``TrainResult`` whose bundle is the fitted hybrid; the train CLI and
    the viewer can call it wherever they call ``train`` for a hybrid preset.
    Overrides used: ``pretrained``, ``weights``, ``input_size``, ``batch_size``,
    ``val_fraction``, ``kernel``, ``grid``, ``cv``; the others do not apply to an SVM.
    """
    from ...presets.factory import build_model
    from ...data import load_dataset, stratified_split
    from ...data.fingerprint import data_fingerprint
    from ...errors import Cancelled
    from ...evaluation.evaluate import evaluate
    from ...presets.studies import PRESETS
    from ..events import TrainEvent, TrainResult

    t0 = time.perf_counter()
    ds = load_dataset(data, classes, channel_axis=channel_axis, multi_label=False)
    name = preset or (model if isinstance(model, str) else None)
    if isinstance(model, ModelBundle):
        base = model
    else:
        p = PRESETS.get(name or "")
        output = p.output if p is not None and (p.output != "binary" or len(ds.classes) == 2) else "softmax"
        size = overrides.get("input_size")
        base = build_model(model, classes=ds.classes, in_chans=ds.in_chans, pretrained=overrides.get("pretrained"),
                           weights=overrides.get("weights"), output=output, input_size=None if size is None else tuple(size))
    val_fraction = float(overrides.get("val_fraction", getattr(recipe, "val_fraction", None) or
                                       (PRESETS[name].train.val_fraction if name in PRESETS else 0.1)))
    if val_data is not None:
        train_ds, val_ds = ds, load_dataset(val_data, ds.classes, channel_axis=channel_axis, multi_label=False)
    elif val_fraction > 0:
        tr, va = stratified_split(ds.labels, val_fraction, seed)
        train_ds, val_ds = ds.subset(tr), ds.subset(va)
    else:
        train_ds, val_ds = ds, None
    yield TrainEvent("start", 0, 1, 0, len(train_ds), None, None, {}, None, None,
                     f"hybrid PCA + SVM on {len(train_ds)} images ({len(val_ds) if val_ds else 0} for validation)")
    opts = {k: overrides[k] for k in ("kernel", "grid", "cv", "batch_size") if k in overrides}
    gen = fit_hybrid_steps(base, train_ds, device=device, seed=seed, stop=stop, **opts)
    try:
        while True:
            try:
                ev = next(gen)
            except StopIteration as done:
                bundle = done.value
                break
            yield TrainEvent("step", 0, 1, ev.done if ev.stage == "features" else len(train_ds), len(train_ds),
                             None, None, {}, None, None, ev.message)
    except Cancelled:
        yield TrainEvent("cancelled", 0, 1, 0, len(train_ds), None, None, {}, None, None, "cancelled")
        # nothing fitted: the (unchanged) starting network, with a training record saying so
        unfitted = ModelBundle(base.network, list(base.classes), base.output, base.in_chans, base.preprocess, base.arch,
                               list(base.channel_names), base.thresholds,
                               {**base.provenance, "training": {"method": "hybrid (cancelled before the SVMs were fitted)",
                                                                "epochs_run": 0, "best_epoch": None, "metrics": {},
                                                                "time_s": time.perf_counter() - t0}})
        return TrainResult(unfitted, [], cancelled=True, stopped_early=False)
    metrics: dict[str, float] = {}
    if val_ds is not None and len(val_ds):
        m = evaluate(bundle, val_ds, device=device)
        metrics = {f"val_{k}": float(m[k]) for k in ("accuracy", "macro_f1", "auc_macro") if m.get(k) is not None}
    history = [{"epoch": 1, "loss": None, "val_loss": None, **metrics}]
    bundle.provenance["preset"] = name if name in PRESETS else bundle.provenance.get("preset")
    bundle.provenance["training"] = {
        "method": "hybrid: frozen backbone features → PCA → SVM (scikit-learn), hard vote", "epochs_run": 0,
        "time_s": time.perf_counter() - t0,
        "best_epoch": None, "seed": seed, "history": history, "metrics": metrics,
        "data": {"n_train": len(train_ds), "n_val": len(val_ds) if val_ds else 0, "class_counts": ds.class_counts(),
                 "fingerprint": data_fingerprint(ds),
                 **({"val_fingerprint": data_fingerprint(val_ds)} if val_data is not None else {})},
    }
    yield TrainEvent("epoch", 1, 1, len(train_ds), len(train_ds), None, None, metrics, 0.0, 1, "SVMs fitted")
    yield TrainEvent("done", 1, 1, len(train_ds), len(train_ds), None, None, metrics, 0.0, 1, "done")
    return TrainResult(bundle, history, cancelled=False, stopped_early=False)
