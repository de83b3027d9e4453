"""What a trained model needs to say when not to trust it, fitted at the end of a run.

* OOD statistics (:mod:`core.models.ood`): class means and a shared covariance of
  the training and validation images' pooled features; the flag's threshold is the
  95th percentile of the validation images' cross-fitted scores.
* Temperature scaling (:mod:`core.evaluation.calibration`) fitted on the
  validation images' logits.

Both need held-out images.  A run without a validation split still gets OOD
statistics, with the threshold taken from the training images (the network has
seen them, so their scores run low and the flag fires more often; the model file
says so), and no temperature, since one fitted on images the network has learnt
makes it more confident, not better calibrated.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch

from ..device import eval_mode
from ..evaluation import calibration
from ..models import feature_store, ood
from ..models.bundle import ModelBundle
from ..models.heads import probabilities
from .loop import LoopData

#: fewer held-out images than this give a threshold or a temperature that is mostly noise
MIN_HELD_OUT = 8


@torch.no_grad()
def _pass(bundle: ModelBundle, x: torch.Tensor, rows: torch.Tensor, dev: torch.device, bs: int,
          pooled: bool) -> tuple[np.ndarray, np.ndarray]:
    """(logits, pooled features) of the store rows ``rows``, in eval mode."""
    logits, feats = [], []
    r = rows.cpu().numpy()
    reuse = len(r) > 0 and _head_only_run(bundle, x, int(r[0]))
    with eval_mode(bundle.network), (feature_store.reuse_features() if reuse else contextlib.nullcontext()):
        for s in range(0, len(r), bs):
            xb = x[torch.from_numpy(r[s : s + bs]).to(x.device)].to(dev)
            if reuse:  # a head-only run cached these images' features: no backbone pass
                z, f = feature_store.cached_forward(bundle.network, xb, pooled)
                if f is not None:
                    feats.append(f.cpu().numpy())
            elif pooled:
                z, f = ood.logits_and_pooled(bundle.network, xb)
                feats.append(f.cpu().numpy())
            else:
                z = bundle.network(xb)
            logits.append(z.float().cpu().numpy())
    k = max(1, bundle.num_classes)
    return (np.concatenate(logits) if logits else np.zeros((0, k), np.float32),
            np.concatenate(feats) if feats else np.zeros((0, 0), np.float32))


def _head_only_run(bundle: ModelBundle, x: torch.Tensor, row: int) -> bool:
    """Whether the feature cache holds this network's features of ``x[row]`` (a head-only run put them there)."""
    net = bundle.network
    if not feature_store.cacheable(net):
        return False
    key = (feature_store.row_hashes(x, [row])[row], feature_store.weights_hash(net), feature_store.IDENTITY)
    return feature_store.FEATURES.peek(key) is not None


def _classes(y: torch.Tensor) -> np.ndarray:
    t = y.float().cpu().numpy()
    return t.argmax(1) if t.ndim == 2 and t.shape[1] > 1 else (t.reshape(len(t), -1)[:, 0] > 0.5).astype(int)


def fit_trust(bundle: ModelBundle, data_t: LoopData, dev: torch.device, batch_size: int) -> dict[str, Any]:
    """Fit OOD statistics and the temperature on ``bundle`` in place; returns what was fitted, for the provenance."""
    bs = max(1, batch_size)
    use_ood = ood.supports_ood(bundle.network) and len(data_t.train_rows) >= 2
    _, f_tr = _pass(bundle, data_t.x, data_t.train_rows, dev, bs, use_ood)
    z_va, f_va = _pass(bundle, data_t.x_val, data_t.val_rows, dev, bs, use_ood)
    y_tr, y_va = _classes(data_t.y_train), _classes(data_t.y_val)
    held = len(z_va) >= MIN_HELD_OUT
    record: dict[str, Any] = {}
    if use_ood:
        on = (f"{len(f_va)} validation images (cross-fitted)" if held
              else f"{len(f_tr)} training images (no validation split)")
        bundle.ood = (ood.fit_stats(f_tr, y_tr, bundle.num_classes, f_va, y_va, fitted_on=on) if held
                      else ood.fit_stats(f_tr, y_tr, bundle.num_classes, f_tr, fitted_on=on))
        record["ood"] = {"threshold": round(bundle.ood.threshold, 6), "fitted_on": on}
    else:
        bundle.ood = None
        record["ood"] = {"skipped": "ensembles and FCN maps have no pooled features to model"
                         if len(data_t.train_rows) >= 2 else "too few training images"}
    bundle.calibration = None
    if bundle.multilabel or not held:
        record["calibration"] = {"skipped": "multi-label model" if bundle.multilabel
                                 else f"fewer than {MIN_HELD_OUT} validation images"}
        return record
    t = calibration.fit_temperature(z_va, y_va, bundle.output)
    zt = torch.from_numpy(z_va)
    before = probabilities(zt, bundle.output).numpy()
    after = probabilities(zt / t, bundle.output).numpy()
    bundle.calibration = {
        "temperature": round(t, 6), "method": "temperature", "fitted_on": f"{len(z_va)} validation images",
        "nll_before": round(calibration.nll(z_va, y_va, bundle.output), 6),
        "nll_after": round(calibration.nll(z_va, y_va, bundle.output, t), 6),
        **{k: round(v, 6) for k, v in calibration.calibration_summary(before, after, y_va).items()},
    }
    record["calibration"] = dict(bundle.calibration)
    return record
