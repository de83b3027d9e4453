"""Issue 17, calibration follow-up: which images should fit the temperature, and does
one parameter more (temperature + class bias) help — measured on a large test set.

One network per seed, trained as ``bench_trust --part calibration`` trains it (25 %
validation split: keep-best picks the epoch on it and the temperature ``T_sel`` is
fitted on it).  Then, on images the run never saw, with the labels flipped at the
same rate:

* ``fresh``: ``n_fresh`` images used for nothing else: ``T_fresh`` (all of them) and
  ``T_half`` (the first half: what a validation split halved into "choose the epoch" /
  "fit T" would leave), and temperature + class bias fitted on them (L2 on the bias);
* ``test``: ``n_big_test`` images: ECE (15 bins), NLL, Brier of every variant, and
  ``ece_floor``: the mean ECE a perfectly calibrated model with the same confidences
  shows on that many images.
"""

from __future__ import annotations

import numpy as np
import torch

from napari_cellclass.core.evaluation import calibration


def _logits(bundle, images: list) -> np.ndarray:
    """Raw (uncalibrated) logits: the bundle's temperature switched off for the pass."""
    from napari_cellclass.core.models.heads import logits_from_probabilities

    from .bench_trust import _records

    kept, bundle.calibration = bundle.calibration, None
    try:
        p = _records(bundle, images)[0]
    finally:
        bundle.calibration = kept
    return logits_from_probabilities(torch.as_tensor(p, dtype=torch.float64), bundle.output, eps=1e-12).numpy()


def fit_temp_bias(z: np.ndarray, y: np.ndarray, l2: float = 1.0) -> tuple[float, np.ndarray]:
    """Softmax(z / T + b) minimising NLL + ``l2`` · |b|² (the bias shrunk towards 0)."""
    zt, yt = torch.as_tensor(z, dtype=torch.float64), torch.as_tensor(y, dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t, b], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(zt / log_t.exp() + b, yt) + l2 * (b**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp()), b.detach().numpy()


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _scores(p: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
    from .bench_trust import _ece_floor

    return {"ece": calibration.ece(p, y), "nll": calibration.nll(np.log(np.clip(p, 1e-12, 1)), y, "softmax"),
            "brier": calibration.brier(p, y), "ece_floor": _ece_floor(p, rng)}


def cal_split_seed(cfg: dict, seed: int) -> dict:
    from .bench_trust import _cells, _noisy, _train

    rng = np.random.default_rng(900 + seed)
    size, rate = cfg["size"], cfg["label_noise"]
    x_tr, y_tr = _cells(cfg["n_train"], size, 600 + seed, (0, 1))
    x_fr, y_fr = _cells(cfg["n_fresh"], size, 800 + seed, (0, 1))
    x_te, y_te = _cells(cfg["n_big_test"], size, 700 + seed, (0, 1))
    y_tr, y_fr, y_te = _noisy(y_tr, rate, rng), np.asarray(_noisy(y_fr, rate, rng)), np.asarray(_noisy(y_te, rate, rng))
    bundle = _train(cfg, x_tr, y_tr, seed, 0.25)
    z_fr, z_te = _logits(bundle, x_fr), _logits(bundle, x_te)
    half = len(z_fr) // 2
    temps = {"none": 1.0, "T_sel (validation split, chose the epoch)": bundle.temperature,
             "T_fresh (all fresh images)": calibration.fit_temperature(z_fr, y_fr, "softmax"),
             "T_half (half the fresh images)": calibration.fit_temperature(z_fr[:half], y_fr[:half], "softmax")}
    out: dict = {"seed": seed, "accuracy": float((z_te.argmax(1) == y_te).mean()), "n_test": len(y_te),
                 "n_fresh": len(y_fr), "variants": {}}
    for name, t in temps.items():
        out["variants"][name] = {"T": t, **_scores(_softmax(z_te / t), y_te, rng)}
    for l2 in (0.1, 1.0):
        t, b = fit_temp_bias(z_fr, y_fr, l2)
        out["variants"][f"T+bias fresh (l2={l2})"] = {"T": t, "bias": b.tolist(), **_scores(_softmax(z_te / t + b), y_te, rng)}
    # oracles (fitted on the test images themselves: bounds, not methods): can any one
    # temperature reach the ECE target on this network, and where does NLL put it?
    grid = np.exp(np.linspace(np.log(0.3), np.log(6.0), 121))
    t_ece = float(grid[np.argmin([calibration.ece(_softmax(z_te / t), y_te) for t in grid])])
    out["variants"]["oracle: T minimising test ECE"] = {"T": t_ece, **_scores(_softmax(z_te / t_ece), y_te, rng)}
    t_nll = calibration.fit_temperature(z_te, y_te, "softmax")
    out["variants"]["oracle: T minimising test NLL"] = {"T": t_nll, **_scores(_softmax(z_te / t_nll), y_te, rng)}
    return out


def to_markdown(rows: list[dict]) -> list[str]:
    lines = ["## Which images fit the temperature (test ECE / NLL / Brier on the large test set)", "",
             "| seed | accuracy | variant | T | ece | ece_floor | nll | brier |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for name, v in r["variants"].items():
            lines.append(f"| {r['seed']} | {r['accuracy']:.3f} | {name} | {v['T']:.3f} | {v['ece']:.3f} | "
                         f"{v['ece_floor']:.3f} | {v['nll']:.3f} | {v['brier']:.3f} |")
    return lines + [""]
