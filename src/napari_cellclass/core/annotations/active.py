"""What to label next: rank unlabelled images, frames or regions by uncertainty.

Scores are "higher = more worth labelling", each in [0, 1]:

* ``least_confidence``: ``1 - max_k p_k`` (softmax models);
* ``margin``: ``1 - (p_top1 - p_top2)`` — the two best classes are close;
* ``entropy``: ``H(p) / log K`` — probability spread over many classes;
* ``threshold``: closeness of the most ambiguous class to its decision threshold
  (0.5 unless given), ``max_k 1 - |p_k - t_k| / max(t_k, 1 - t_k)`` — for binary
  and multi-label (sigmoid) models, as study 4 ranks its images;
* from ensemble member probabilities ``(M, N, K)``: ``variance`` (mean over classes
  of the variance across members, scaled so total disagreement is 1),
  ``vote_entropy`` (entropy of the members' hard votes / log min(M, K)) and
  ``mutual_information`` (BALD: ``H(mean p) - mean H(p_m)``, / log K).

A binary model's single probability column ``(N, 1)`` is read as ``[1 - p, p]``.
Ties are broken by input order, so the ranking is fully deterministic.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DataError

SINGLE_METHODS = ("least_confidence", "margin", "entropy", "threshold")
ENSEMBLE_METHODS = ("variance", "vote_entropy", "mutual_information")
METHODS = SINGLE_METHODS + ENSEMBLE_METHODS


def methods_for(multilabel: bool, members: int = 1) -> tuple[str, ...]:
    """The scores that fit a model, its default first.

    Multi-label (sigmoid) models are ranked by closeness to their thresholds, as
    study 4 does; an ensemble (``members`` > 1) adds the disagreement of its
    members and leads with it.  Of those only ``variance`` reads independent
    per-class probabilities correctly: vote entropy and mutual information treat
    a row as one distribution over classes.
    """
    if multilabel:
        return ("variance", "threshold") if members > 1 else ("threshold",)
    single = ("margin", "least_confidence", "entropy")
    return ("mutual_information", "variance", "vote_entropy", *single) if members > 1 else single


@dataclass(frozen=True)
class Ranking:
    """``order``: indices into the candidates, most uncertain first (excluded ones
    left out); ``scores``: the score of every candidate, in input order (NaN where
    excluded); ``keys``: the candidates' keys in ranked order."""

    order: np.ndarray
    scores: np.ndarray
    keys: list[Any]
    method: str

    def __len__(self) -> int:
        return len(self.order)


def _as_probs(p: Any, what: str) -> np.ndarray:
    a = np.asarray(p, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.shape[-1] == 1:
        a = np.concatenate([1.0 - a, a], axis=-1)
    if not np.isfinite(a).all():
        raise DataError(f"{what} contain NaN or infinite values", "rank with the probabilities of a finished prediction")
    if a.size and (a.min() < -1e-6 or a.max() > 1 + 1e-6):
        raise DataError(f"{what} must lie in [0, 1], got {a.min():.3g}..{a.max():.3g}",
                        "pass probabilities (after softmax/sigmoid), not logits")
    return np.clip(a, 0.0, 1.0)


def _entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.sum(np.where(p > 0, p * np.log(p), 0.0), axis=axis)


def uncertainty(probs: Any, method: str = "margin", thresholds: Sequence[float] | float | None = None) -> np.ndarray:
    """Per-row uncertainty scores of ``probs`` (N, K) — or (M, N, K) for the ensemble methods."""
    if method not in METHODS:
        raise DataError(f"unknown uncertainty method {method!r}", f"use one of {', '.join(METHODS)}")
    if method in ENSEMBLE_METHODS:
        return _ensemble_scores(probs, method)
    p = _as_probs(probs, "probabilities")
    if p.ndim != 2:
        raise DataError(f"probabilities must be (N, K), got shape {p.shape}",
                        f"for member probabilities (M, N, K) use {', '.join(ENSEMBLE_METHODS)}")
    k = p.shape[1]
    if method == "least_confidence":
        return 1.0 - p.max(axis=1)
    if method == "margin":
        top2 = np.sort(p, axis=1)[:, -2:]
        return 1.0 - (top2[:, 1] - top2[:, 0])
    if method == "entropy":
        return _entropy(p) / np.log(k)
    raw_cols = np.shape(probs)[-1] if np.ndim(probs) == 2 else 1
    if raw_cols == 1:
        p, k = p[:, 1:], 1  # binary: score the one real column, not its mirror image
    t = np.asarray(0.5 if thresholds is None else thresholds, dtype=np.float64).ravel()
    if t.size not in (1, k):
        raise DataError(f"{t.size} thresholds for {k} class(es)", "give one threshold, or one per class")
    t = np.broadcast_to(t, (k,))
    if ((t <= 0) | (t >= 1)).any():
        raise DataError(f"thresholds must lie strictly between 0 and 1, got {t.tolist()}", "use the model's class thresholds")
    closeness = 1.0 - np.abs(p - t) / np.maximum(t, 1.0 - t)
    return closeness.max(axis=1)


def _ensemble_scores(member_probs: Any, method: str) -> np.ndarray:
    raw = np.asarray(member_probs, dtype=np.float64)
    if raw.ndim == 2:  # (M, N) binary members
        raw = raw[..., None]
    if raw.ndim != 3:
        raise DataError(f"member probabilities must be (members, N, K), got shape {raw.shape}",
                        "pass Ensemble.member_probabilities(...) as a numpy array")
    m = raw.shape[0]
    p = np.stack([_as_probs(raw[i], "member probabilities") for i in range(m)])
    k = p.shape[-1]
    if m < 2:
        raise DataError("ensemble disagreement needs at least 2 members", "use margin or entropy for a single model")
    if method == "variance":
        # p in [0,1]: the variance across members is at most 1/4 (half at 0, half at 1)
        return np.clip(p.var(axis=0).mean(axis=1) * 4.0, 0.0, 1.0)
    if method == "vote_entropy":
        votes = p.argmax(axis=2)  # (M, N)
        share = np.stack([(votes == c).mean(axis=0) for c in range(k)], axis=1)
        return _entropy(share) / np.log(min(m, k))
    mean = p.mean(axis=0)
    return np.clip((_entropy(mean) - _entropy(p).mean(axis=0)) / np.log(k), 0.0, 1.0)


def rank(probs: Any, method: str = "margin", *, keys: Sequence[Hashable] | None = None,
         exclude: Sequence[bool] | set[Hashable] | None = None,
         thresholds: Sequence[float] | float | None = None, limit: int | None = None) -> Ranking:
    """Order candidates by uncertainty, most worth labelling first.

    ``probs`` is (N, K) per candidate (or (M, N, K) member probabilities for the
    ensemble methods); ``keys`` names the candidates (default 0..N-1), e.g.
    ``(image_key, frame)``; ``exclude`` is a boolean mask or a set of keys that are
    labelled already; ``limit`` keeps the first ones.  Ties keep input order.
    """
    scores = uncertainty(probs, method, thresholds)
    n = len(scores)
    keys = list(range(n)) if keys is None else list(keys)
    if len(keys) != n:
        raise DataError(f"{len(keys)} keys for {n} rows of probabilities", "give one key per candidate")
    if exclude is None:
        skip = np.zeros(n, dtype=bool)
    elif isinstance(exclude, (set, frozenset)):
        skip = np.array([k in exclude for k in keys], dtype=bool)
    else:
        skip = np.asarray(exclude, dtype=bool)
        if skip.shape != (n,):
            raise DataError(f"exclude has {skip.size} entries for {n} candidates", "give one flag per candidate")
    order = np.lexsort((np.arange(n), -scores))  # by score descending, then input order
    order = order[~skip[order]]
    if limit is not None:
        order = order[: max(0, int(limit))]
    out = scores.copy()
    out[skip] = np.nan
    return Ranking(order, out, [keys[i] for i in order], method)


#: the name the package exports (``napari_cellclass.rank_uncertain``)
rank_uncertain = rank
