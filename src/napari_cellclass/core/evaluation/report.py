"""Figures a biologist can put in a paper, from a model and a labelled data set.

``write_report`` evaluates the model once and writes PNGs (200 dpi) plus the
metrics as JSON:

* ``confusion_matrix.png`` — counts and row-normalised (recall on the diagonal);
  for multi-label models study 5's matrix with its "nothing predicted" column;
* ``roc_curves.png`` — one-vs-rest ROC curve per class with its AUC;
* ``confidence.png`` — top-class probability of right vs wrong predictions
  (study 1, table 9); multi-label: scores of present vs absent labels;
* ``reliability.png`` — accuracy against confidence before and after the model's
  temperature (single-label models; :mod:`core.evaluation.reliability_plot`);
* ``training_curves.png`` — loss and validation metrics per epoch, from the
  ``history`` given or the model's ``provenance['training']['history']``;
* ``metrics.json`` — what ``cellclass evaluate`` writes.

matplotlib is used through its object-oriented Agg canvas only (no pyplot, no
global backend switch), imported inside the functions, so importing this module
costs nothing and a running napari keeps its own backend.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..atomicfile import describe_os_error, write_atomic
from ..errors import CellclassError

DPI = 200


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    try:
        return write_atomic(path, buf.getvalue())
    except OSError as err:
        raise CellclassError(f"cannot write {path} ({describe_os_error(err)})", "choose a writable output folder") from err


def _matrix_panel(ax: Any, m: np.ndarray, rows: list[str], cols: list[str], title: str, fmt: str) -> None:
    im = ax.imshow(m, cmap="Blues", vmin=0, vmax=max(float(m.max()), 1e-9) if fmt == "d" else 1.0)
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    if len(rows) <= 15:  # numbers stay readable up to ~15 classes
        top = m.max() if m.size else 0
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                v = m[i, j]
                text = f"{int(v)}" if fmt == "d" else ("" if math.isnan(v) else f"{v:.2f}")
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        color="white" if (v > 0.5 * top if fmt == "d" else v > 0.5) else "black")
    ax.figure.colorbar(im, ax=ax, shrink=0.8)


def plot_confusion(metrics: dict[str, Any], path: Path) -> Path:
    m = np.asarray(metrics["confusion_matrix"], np.float64)
    rows = list(metrics["classes"])
    cols = list(metrics.get("confusion_columns", rows))
    sums = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, sums, out=np.full_like(m, np.nan), where=sums > 0)
    k = max(len(cols), 2)
    fig = _figure(2 * (1.2 + 0.45 * k) + 1.5, 1.5 + 0.45 * k)
    a1, a2 = fig.subplots(1, 2)
    _matrix_panel(a1, m, rows, cols, f"counts (n = {metrics['n_images']})", "d")
    _matrix_panel(a2, norm, rows, cols, "row-normalised (recall on the diagonal)", "f")
    return _save(fig, path)


def plot_roc(y: np.ndarray, probs: np.ndarray, classes: list[str], path: Path) -> Path:
    """``y``: (N, K) 0/1 — one-hot for single-label, multi-hot for multi-label."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fig = _figure(5.5, 5)
    ax = fig.subplots()
    cmap = _colors(len(classes))
    drawn = 0
    for k, name in enumerate(classes):
        if len(classes) == 2 and k == 0 and y.shape[1] == 2 and (y.sum(1) == 1).all():
            continue  # binary single-label: class 0's curve mirrors class 1's
        pos = y[:, k].astype(bool)
        if pos.all() or not pos.any():
            continue
        fpr, tpr, _ = roc_curve(pos, probs[:, k])
        ax.plot(fpr, tpr, color=cmap[k], lw=1.5, label=f"{name} (AUC {roc_auc_score(pos, probs[:, k]):.3f})")
        drawn += 1
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC, one class vs rest" if drawn else "ROC undefined (every class needs positives and negatives)")
    if drawn:
        ax.legend(loc="lower right", fontsize=7)
    return _save(fig, path)


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def plot_confidence(ev: Any, path: Path) -> Path:
    fig = _figure(6, 4)
    ax = fig.subplots()
    bins = np.linspace(0, 1, 21)
    if ev.multilabel:
        y = ev.y_multi().astype(bool)
        ax.hist(ev.probs[y], bins=bins, alpha=0.6, color="tab:green", label=f"present labels (n = {int(y.sum())})")
        ax.hist(ev.probs[~y], bins=bins, alpha=0.6, color="tab:red", label=f"absent labels (n = {int((~y).sum())})")
        ax.set_xlabel("class score")
        ax.set_title("scores of present vs absent labels")
    else:
        conf = ev.probs.max(axis=1)
        right = ev.probs.argmax(axis=1) == ev.y_single()
        for sel, color, what in ((right, "tab:green", "right"), (~right, "tab:red", "wrong")):
            mean = f", mean {conf[sel].mean():.2f}" if sel.any() else ""
            ax.hist(conf[sel], bins=bins, alpha=0.6, color=color, label=f"{what} (n = {int(sel.sum())}{mean})")
        ax.set_xlabel("confidence (probability of the predicted class)")
        ax.set_title("confidence of right vs wrong predictions")
    ax.set_ylabel("images" if not ev.multilabel else "labels")
    ax.legend(fontsize=8)
    return _save(fig, path)


def training_history(bundle: Any, history: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    if history:
        return list(history)
    training = (bundle.provenance or {}).get("training") or {}
    return list(training.get("history") or []) if isinstance(training, dict) else []


def plot_training(history: list[dict[str, Any]], path: Path) -> Path | None:
    """Loss (left) and validation metrics (right) per epoch; None without a history."""
    rows = [_flat(h) for h in history if isinstance(h, dict)]
    if not rows:
        return None
    epochs = [r.get("epoch", i + 1) for i, r in enumerate(rows)]
    skip = {"epoch", "stage", "lr", "time_s", "loss", "val_loss"}
    metric_keys = sorted({k for r in rows for k in r if k not in skip})
    fig = _figure(10 if metric_keys else 5.5, 4)
    axes = fig.subplots(1, 2 if metric_keys else 1)
    ax = axes[0] if metric_keys else axes
    for key, color in (("loss", "tab:blue"), ("val_loss", "tab:orange")):
        vals = [r.get(key) for r in rows]
        if any(v is not None for v in vals):
            ax.plot(epochs, [np.nan if v is None else v for v in vals], marker="o", ms=3, color=color,
                    label="training loss" if key == "loss" else "validation loss")
    from matplotlib.ticker import MaxNLocator

    for a in (axes if metric_keys else [axes]):
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("loss")
    ax.legend(fontsize=8)
    if metric_keys:
        for key in metric_keys:
            axes[1].plot(epochs, [r.get(key, np.nan) for r in rows], marker="o", ms=3, label=key.replace("_", " "))
        axes[1].set_xlabel("epoch")
        axes[1].set_title("validation metrics")
        axes[1].legend(fontsize=8)
    return _save(fig, path)


def _flat(h: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in h.items():
        if isinstance(v, dict):
            out.update({f"{kk}": vv for kk, vv in v.items() if isinstance(vv, (int, float))})
        elif isinstance(v, (int, float)) and not isinstance(v, bool) or v is None:
            out[k] = v
    return out


def write_report(bundle: Any, data: Any, outdir: str | Path, history: list[dict[str, Any]] | None = None,
                 device: str = "auto", batch_size: int = 32) -> list[Path]:
    """Evaluate ``bundle`` on ``data`` and write the figures and metrics to ``outdir``.

    Returns the files written (PNGs, then ``metrics.json``).  The training curves
    are left out when neither ``history`` nor the model's provenance has one.
    """
    from . import calibration
    from .evaluate import evaluation_data, metrics_of

    out = Path(outdir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CellclassError(f"cannot create the report folder {out} ({describe_os_error(err)})",
                             "choose a writable output folder") from err
    ev = evaluation_data(bundle, data, device, batch_size)
    metrics = metrics_of(ev)
    y = ev.y_multi()  # one-hot for single-label
    written = [
        plot_confusion(metrics, out / "confusion_matrix.png"),
        plot_roc(y, ev.probs, ev.classes, out / "roc_curves.png"),
        plot_confidence(ev, out / "confidence.png"),
    ]
    if not ev.multilabel:  # calibration and OOD, as `cellclass evaluate` reports them
        from .reliability_plot import draw_reliability
        from .trust_metrics import calibration_metrics, ood_metrics

        metrics["calibration"] = calibration_metrics(bundle, ev.probs, ev.y_single())
        metrics["ood"] = ood_metrics(bundle, ev.ood_scores)
        t = bundle.temperature
        after = ev.probs / ev.probs.sum(1, keepdims=True)
        before = after if t == 1.0 else calibration.scaled_probabilities(after, 1.0 / t, bundle.output)
        fig = _figure(5, 5)
        draw_reliability(fig.subplots(), before, after, ev.y_single(), t)
        written.append(_save(fig, out / "reliability.png"))
    curves = plot_training(training_history(bundle, history), out / "training_curves.png")
    if curves is not None:
        written.append(curves)
    written.append(write_atomic(out / "metrics.json", json.dumps(metrics, indent=2).encode()))
    return written
