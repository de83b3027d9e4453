"""The end of a run: decision thresholds, the held-out test score, and the training
record every model file carries in its provenance."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..data.fingerprint import data_fingerprint
from ..models.bundle import ModelBundle
from ..presets.recipe import TrainRecipe
from .distributed import DistContext
from .events import TrainEvent
from .loop import LoopData, LoopOutcome
from .plan import TrainPlan
from .prep import test_record
from .trust import fit_trust


def finish(plan: TrainPlan, outcome: LoopOutcome, data_t: LoopData | None, dev: torch.device) -> dict[str, Any]:
    """Set thresholds on the trained bundle and score the test split; returns the test's held-out record."""
    bundle, r = plan.bundle, plan.recipe
    if bundle.multilabel and not outcome.cancelled and outcome.epochs_run > 0 and data_t is not None:
        bundle.thresholds = _dice_thresholds(bundle, data_t, dev, r)
    record: dict[str, Any] = {"metrics": None, "held_out": {}}
    if data_t is not None and outcome.epochs_run > 0:  # OOD statistics and temperature (core.training.trust)
        record["trust"] = fit_trust(bundle, data_t, dev, 2 * r.batch_size)
    if plan.test is not None and not outcome.cancelled:
        record["metrics"], record["held_out"] = test_record(bundle, plan.test, dev, 2 * r.batch_size)
    bundle.network.to("cpu")
    return record


def provenance(
    plan: TrainPlan,
    outcome: LoopOutcome,
    test: dict[str, Any],
    *,
    source: Any,
    seed: int,
    dev: torch.device,
    ctx: DistContext,
    time_s: float,
) -> dict[str, Any]:
    """The bundle's provenance after training: what came before, plus this run's record."""
    bundle = plan.bundle
    kept = {k: v for k, v in bundle.provenance.items() if k not in ("loaded_from", "training", "metrics")}
    return {
        **kept,
        **({"metrics": {"test": test["metrics"]}} if test["metrics"] is not None else {}),
        "training": {
            "epochs_run": outcome.epochs_run,
            "steps_run": outcome.steps_run,
            "best_epoch": outcome.best_epoch,
            **({"kept": outcome.kept} if outcome.kept else {}),
            "stopped_early": outcome.stopped_early,
            "cancelled": outcome.cancelled,
            "started_from": plan.started_from,
            "seed": seed,
            "device": str(dev),
            **(
                {"distributed": {"world_size": ctx.world_size, "backend": "nccl" if dev.type == "cuda" else "gloo"}}
                if ctx.active
                else {}
            ),
            "time_s": round(time_s, 2),
            **({"trust": test["trust"]} if test.get("trust") else {}),
            "recipe": asdict(plan.recipe),
            "class_balance": plan.build.class_balance,
            "data": _data_record(plan, source, test["held_out"]),
            "metrics": outcome.best_metrics,
            "history": [
                {k: (round(v, 6) if isinstance(v, float) else v) for k, v in h.items()} for h in outcome.history
            ],
        },
    }


def _data_record(plan: TrainPlan, source: Any, held_out: dict[str, Any]) -> dict[str, Any]:
    train_ds, val_ds = plan.train, plan.val
    return {
        "source": str(source) if isinstance(source, (str, Path)) else type(source).__name__,
        "n_train": len(train_ds),
        "n_val": len(val_ds),
        "class_counts": train_ds.class_counts(),
        "val_class_counts": val_ds.class_counts(),
        "fingerprint": data_fingerprint(plan.data),
        # an FCN learns painted images from their masks, not their image labels: say how many
        **(
            {"painted_targets": sum(train_ds.has_target_mask(i) for i in range(len(train_ds)))}
            if plan.bundle.is_fcn
            else {}
        ),
        **({"val_fingerprint": data_fingerprint(val_ds)} if plan.separate_val else {}),
        **held_out,
    }


def final_event(outcome: LoopOutcome) -> TrainEvent:
    kind = "cancelled" if outcome.cancelled else "done"
    msg = (
        f"cancelled after {outcome.epochs_run} epoch(s); kept the best model so far"
        if outcome.cancelled
        else f"finished {outcome.epochs_run} epoch(s)" + (" (early stopping)" if outcome.stopped_early else "")
        + (f"; {outcome.kept['reason']}" if outcome.kept else "")
    )
    last = outcome.history[-1] if outcome.history else {}
    return TrainEvent(
        kind=kind,
        epoch=outcome.epochs_run,
        epochs=outcome.epochs_run,
        total=0,
        loss=last.get("loss"),
        val_loss=last.get("val_loss"),
        metrics=dict(outcome.best_metrics),
        eta_s=0.0,
        best_epoch=outcome.best_epoch,
        message=msg,
    )


@torch.no_grad()
def _dice_thresholds(bundle: ModelBundle, data_t: LoopData, dev: torch.device, r: TrainRecipe) -> list[float]:
    """Per-class thresholds maximising Dice on the training images (study 5)."""
    from ..evaluation.thresholds import choose_thresholds
    from ..models.heads import probabilities

    x, rows = data_t.x, data_t.train_rows.numpy()
    y = data_t.y_train.cpu().numpy()
    probs = []
    bs = max(1, 2 * r.batch_size)
    for s in range(0, len(rows), bs):
        idx = torch.from_numpy(rows[s : s + bs]).to(x.device)
        probs.append(probabilities(bundle.network(x[idx].to(dev)), bundle.output).float().cpu())
    return choose_thresholds(y, torch.cat(probs).numpy(), r.threshold_step)


__all__ = ["finish", "provenance", "final_event"]
