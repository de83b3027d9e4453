"""The model card: what `cellclass info` prints and the viewer shows, from a bundle's metadata."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..io.preprocess import NORMALIZATION_METHODS

if TYPE_CHECKING:
    from .bundle import ModelBundle


def model_card(bundle: ModelBundle) -> str:
    """Human-readable summary: what `cellclass info` prints and the viewer's model card shows."""
    pre = bundle.preprocess
    norm = pre.normalization
    prov = bundle.provenance
    lines = [
        f"classes ({len(bundle.classes)}, {'multi-label' if bundle.multilabel else 'single-label'}): {', '.join(bundle.classes)}",
        f"architecture: {bundle.arch.describe()}",
        f"input: {bundle.in_chans} channel(s) [{', '.join(bundle.channel_names)}], {pre.input_size[0]}x{pre.input_size[1]} px, "
        f"resize '{pre.resize}' ({pre.interpolation})",
        f"normalisation: {norm.method}" + (f" mean={_short(norm.mean, norm.method)}" if norm.mean else "")
        + (f" std={_short(norm.std, norm.method)}" if norm.std else ""),
        # the intensity policy in words, so a reader sees what the statistics are and where they came from
        *([f"intensity policy: {NORMALIZATION_METHODS[norm.method]}"] if norm.method in ("dataset", "image_std") else []),
        *([f"intensity statistics from the {norm.fitted_on}"] if norm.fitted_on else []),
        f"output: {bundle.output}" + (f", thresholds {bundle.thresholds}" if bundle.thresholds else ""),
    ]
    lines.extend(_package_lines(prov.get("bioimageio")))
    lines.extend(_trust_lines(bundle))
    data = (prov.get("training") or {}).get("data") or {}
    if data.get("fingerprint"):  # the long training record below is cut; these two lines never are
        lines.append(f"training data fingerprint: {data['fingerprint']}")
    test = (prov.get("metrics") or {}).get("test")
    if isinstance(test, dict):
        parts = [f"{k.replace('_', ' ')} {test[k]:.3f}" for k in ("accuracy", "macro_f1", "auc_macro", "mean_dice")
                 if isinstance(test.get(k), float)]
        lines.append(f"held-out test ({test.get('n_images', data.get('n_test'))} images): " + ", ".join(parts))
    for key in ("description", "created", "weights", "preset", "training", "data", "metrics", "versions"):
        if prov.get(key) not in (None, "", [], {}):
            value = prov[key]
            if key == "training" and isinstance(value, dict):
                lines.extend(_training_lines(value))
                continue
            text = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)
            lines.append(f"{key}: {text[:600]}")
    return "\n".join(lines)


def _package_lines(pkg: Any) -> list[str]:
    """A bioimage.io package's weights, and for a foreign one its own preprocessing and what explains it."""
    if not isinstance(pkg, dict):
        return []
    head = f"bioimage.io package (spec {pkg.get('format_version')}): {pkg.get('weights')} weights"
    head += f" of {pkg['architecture']}" if pkg.get("architecture") else ""
    lines = [head]
    if "preprocessing" in pkg:  # foreign: normalisation is the package's, inside its network
        lines.append("its own preprocessing, inside the network: " + (", ".join(pkg["preprocessing"]) or "none"))
    if pkg.get("explain"):
        lines.append(f"explanations: {pkg['explain']}")
    return lines


def _trust_lines(bundle: ModelBundle) -> list[str]:
    """Whether the model can say when not to trust it: OOD statistics and calibration."""
    from .ood import NO_STATS

    lines = [bundle.ood.describe() if bundle.ood is not None else NO_STATS]
    cal = bundle.calibration
    if cal:
        nums = [f"{k.split('_')[0].upper()} {cal[k + '_before']:.3f} -> {cal[k + '_after']:.3f}"
                for k in ("ece", "brier", "nll") if isinstance(cal.get(k + "_before"), float) and isinstance(cal.get(k + "_after"), float)]
        lines.append(f"calibration: temperature {cal['temperature']:.3g} fitted on {cal.get('fitted_on', 'held-out images')}"
                     + (f" ({', '.join(nums)})" if nums else ""))
    elif not bundle.multilabel:
        lines.append("calibration: none (probabilities as the network gives them)")
    return lines


def _training_lines(training: dict[str, Any]) -> list[str]:
    """The training provenance as a few readable lines.

    One truncated JSON dump lost the metrics of any run longer than a few epochs
    (the per-epoch history sorts before them), so the card names what a reader
    checks first: how long it trained, on what data, and how well it did.
    """
    t = training
    run = [f"{t['epochs_run']} epoch(s)" if "epochs_run" in t else "",
           f"best epoch {t['best_epoch']}" if t.get("best_epoch") else "",
           "stopped early" if t.get("stopped_early") else "", "cancelled" if t.get("cancelled") else "",
           f"on {t['device']}" if t.get("device") else "", f"{t['time_s']} s" if t.get("time_s") is not None else "",
           f"from {t['started_from']}" if t.get("started_from") else "", f"seed {t['seed']}" if "seed" in t else ""]
    lines = ["training: " + ", ".join(r for r in run if r)]
    kept = t.get("kept")
    if isinstance(kept, dict) and kept.get("reason"):
        lines.append(f"kept weights: epoch {kept.get('epoch')} ({kept['reason']})")
    recipe = t.get("recipe")
    if isinstance(recipe, dict):
        aug = recipe.get("augment") or {}
        on = [k for k, v in aug.items() if v not in (False, 0, 0.0, None, "", "constant")]
        parts = [f"{k} {recipe[k]}" for k in ("optimizer", "lr", "batch_size", "schedule", "weight_decay") if k in recipe]
        lines.append("training recipe: " + ", ".join(parts) + f"; augmentation: {', '.join(on) or 'none'}")
    data = t.get("data")
    if isinstance(data, dict):
        n = [f"{data[k]} {k[2:]}" for k in ("n_train", "n_val", "n_test") if k in data]
        counts = f", class counts {data['class_counts']}" if "class_counts" in data else ""
        src = f", from {data['source']}" if data.get("source") else ""
        lines.append(f"training data: {' / '.join(n)} images{counts}{src}")
    metrics = t.get("metrics")
    if isinstance(metrics, dict) and metrics:
        lines.append("training metrics: " + ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()))
    return lines


def _short(vals: tuple[float, ...], method: str) -> list[float]:
    """Measured statistics to 5 significant digits (they have no more meaning); given ones as given."""
    return [float(f"{v:.5g}") for v in vals] if method == "dataset" else list(vals)
