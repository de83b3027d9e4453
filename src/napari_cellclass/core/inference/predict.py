"""Batched, device-aware inference over images, files and stacks.

Reading and canonicalising images runs in a background thread while the network
works on the previous batch, so a folder of files costs about as much as the
forward passes alone.  Same-sized planes are preprocessed as one batch on the
device.  Every plane of a stack is one row of the result.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..models.bundle import ModelBundle
from ..device import autocast, eval_mode, prepare_network, resolve_device, uses_channels_last
from ..errors import CellclassError, ImageError
from ..io.files import ImageFile, read_image
from ..io.prefetch import prefetch
from ..io.images import ChannelAxis, get_plane, inspect, match_channels
from ..io.multiscale import LevelPick, Pyramid
from ..io.pyramid_source import pick_level
from ..models.heads import probabilities
from ..models.ood import logits_and_pooled
from ..models.feature_store import cache_tag, cacheable, cached_forward, reusing
from .options import RunOptions, run_options

ImageLike = Any  # np.ndarray | dask/zarr array | path (.zarr too) | ImageFile | Pyramid | an object with .data (a napari layer)
Progress = Callable[[int, int | None], None]


@dataclass
class PlanePrediction:
    """One row of a prediction: which source, which frame, the class probabilities."""

    index: int  # position of the source in the input sequence
    name: str
    frame: int
    probs: np.ndarray  # (K,)
    error: str | None = None  # set (and probs empty) when on_error="skip" passed over a source
    ood_score: float | None = None  # core.models.ood: higher = less like the training data (None: no statistics)
    ood: bool | None = None  # ood_score above the model's threshold


@dataclass
class _Item:
    index: int
    name: str
    frame: int
    plane: np.ndarray | None
    value_max: float | None
    error: str | None = None


def as_sources(images: ImageLike | Iterable[ImageLike]) -> Iterable[ImageLike]:
    """A single image (array, path, layer) or an iterable of them, as an iterable."""
    if isinstance(images, (np.ndarray, str, os.PathLike, ImageFile, Pyramid)) or hasattr(images, "shape") or hasattr(images, "data"):
        return [images]
    return images


def resolve_source(src: ImageLike, index: int, channel_axis: ChannelAxis,
                   pick: LevelPick | None = None) -> tuple[Any, ChannelAxis, bool | None, str]:
    picked = pick_level(src, pick, channel_axis)  # a pyramid (multiscale layer, OME-Zarr): one level of it
    if picked is not None:
        pyr, level = picked
        return level.data, pyr.channel_axis if channel_axis == "auto" else channel_axis, pyr.rgb, pyr.name
    if isinstance(src, (str, os.PathLike)):
        src = read_image(src)
    if isinstance(src, ImageFile):
        axis = src.channel_axis if channel_axis == "auto" else channel_axis
        return src.data, axis, src.rgb, str(src.path)
    if hasattr(src, "data") and not hasattr(src, "shape"):  # a napari layer or similar
        return src.data, channel_axis, getattr(src, "rgb", None), str(getattr(src, "name", f"image {index}"))
    return src, channel_axis, None, f"image {index}"


def iter_planes_of(
    sources: Iterable[ImageLike],
    in_chans: int,
    channel_axis: ChannelAxis = "auto",
    channels: list[int] | None = None,
    on_error: str = "raise",
    pick: LevelPick | None = None,
) -> Iterator[_Item]:
    for i, src in enumerate(sources):
        name = str(src) if isinstance(src, (str, os.PathLike)) else f"image {i}"
        try:
            data, axis, rgb, name = resolve_source(src, i, channel_axis, pick)
            # picked channels say the data has channels: let the shape rules find them
            layout, vmax = inspect(data, axis, None if channels else in_chans, rgb, name)
            plane_error = getattr(data, "plane_error", None)  # a folder stack with unreadable files
            for t in range(layout.n_frames):
                plane = match_channels(get_plane(data, layout, t, name, native=True), in_chans, channels, name)
                why = plane_error(t) if plane_error is not None else None
                if why is not None:
                    if on_error == "raise":
                        raise ImageError(why, "remove or replace the file")
                    yield _Item(i, name, t, None, None, why)
                    continue
                yield _Item(i, name, t, plane, vmax)
        except CellclassError as err:
            if on_error == "raise":
                raise
            yield _Item(i, name, 0, None, None, str(err))


def _batches(items: Iterator[_Item], size: int) -> Iterator[list[_Item]]:
    batch: list[_Item] = []
    for it in items:
        batch.append(it)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def network_inputs(bundle: ModelBundle, planes: list[np.ndarray], value_max: list[float | None], device: torch.device) -> torch.Tensor:
    """Preprocess canonical planes as the network expects them, batching equal shapes."""
    out: list[torch.Tensor | None] = [None] * len(planes)
    groups: dict[tuple[int, ...], list[int]] = {}
    for j, p in enumerate(planes):
        groups.setdefault(p.shape, []).append(j)
    for idx in groups.values():
        stack = torch.from_numpy(np.stack([planes[j] for j in idx])).to(device, non_blocking=True)
        vmax = torch.tensor([np.nan if value_max[j] is None else value_max[j] for j in idx], dtype=torch.float32, device=device)
        x, _ = bundle.preprocess.prepare_batch(stack, vmax)
        if len(groups) == 1:  # the usual case: one shape, already in order, no re-stacking copy
            break
        for k, j in enumerate(idx):
            out[j] = x[k]
    else:
        x = torch.stack(out)  # type: ignore[arg-type]
    if uses_channels_last(device):
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def ensemble_size(bundle: ModelBundle) -> int:
    """How many networks vote in ``bundle`` (1 for a single network)."""
    from ..models.ensemble import Ensemble

    return len(bundle.network.members) if isinstance(bundle.network, Ensemble) else 1


def run_network(bundle: ModelBundle, x: torch.Tensor, device: torch.device, amp: bool = True,
                members: bool = False, ood_scores: list[float] | None = None) -> np.ndarray:
    """(B, K) probabilities of the model, or with ``members`` (B, M, K) of each ensemble member.
    With ``ood_scores`` (a list) and a model with OOD statistics, each image's score is appended."""
    with torch.inference_mode(), autocast(device, amp):
        if members:
            # the members' own probabilities, before the vote that forward() applies
            return bundle.network.member_probabilities(x).float().transpose(0, 1).cpu().numpy()
        if reusing() and cacheable(bundle.network):  # live mode: the backbone's features from the cache
            want = ood_scores is not None and bundle.ood is not None
            logits, pooled = cached_forward(bundle.network, x, want, cache_tag(device, amp))
            if want:
                ood_scores.extend(bundle.ood.score(pooled).tolist())  # type: ignore[union-attr]
        elif ood_scores is not None and bundle.ood is not None:
            logits, pooled = logits_and_pooled(bundle.network, x)
            ood_scores.extend(bundle.ood.score(pooled).tolist())
        else:
            logits = bundle.network(x)
    # the calibration's temperature (1 when none was fitted) sharpens or softens, never reorders
    return probabilities(logits.float() / bundle.temperature, bundle.output).cpu().numpy()


def predict_records(
    bundle: ModelBundle,
    images: ImageLike | Iterable[ImageLike],
    batch_size: int = 32,
    device: str | torch.device = "auto",
    channel_axis: ChannelAxis = "auto",
    channels: list[int] | None = None,
    amp: bool = True,
    on_error: str = "raise",
    members: bool = False,
    *,
    options: RunOptions | None = None,
) -> Iterator[PlanePrediction]:
    """Yield one :class:`PlanePrediction` per image or stack plane, in input order.

    A generator, so callers (the viewer's workers, the CLI) can report progress and
    stop between batches.  ``on_error="skip"`` turns unreadable sources into rows
    with ``error`` set instead of stopping the run.  With ``members`` (ensembles
    only) each row's ``probs`` is (M, K): every member's probabilities.
    """
    o = run_options(options, device=device, batch_size=batch_size, channel_axis=channel_axis, channels=channels, amp=amp)
    if members and ensemble_size(bundle) < 2:
        raise CellclassError(f"the model ({bundle.arch.describe()}) is a single network, not an ensemble",
                             "ask for member probabilities of an ensemble model only; use predict() for this one")
    dev = resolve_device(o.device)
    pick = LevelPick("classify", bundle.input_size)  # a pyramid's smallest level of at least the input size
    items = prefetch(iter_planes_of(as_sources(images), bundle.in_chans, o.channel_axis, o.channel_list, on_error, pick),
                     2 * o.batch_size)
    with bundle.lock, eval_mode(bundle.network):
        prepare_network(bundle.network, dev)
        for batch in _batches(items, o.batch_size):
            good = [it for it in batch if it.plane is not None]
            scores: list[float] = []
            probs = iter(run_network(bundle, network_inputs(bundle, [it.plane for it in good], [it.value_max for it in good], dev),
                                     dev, o.amp, members, scores)) if good else iter(())
            flags = iter(scores)
            for it in batch:
                if it.plane is None:
                    yield PlanePrediction(it.index, it.name, it.frame, np.empty(0, np.float32), it.error)
                else:
                    yield PlanePrediction(it.index, it.name, it.frame, next(probs), **_ood_fields(bundle, flags))


def _ood_fields(bundle: ModelBundle, scores: Iterator[float]) -> dict[str, Any]:
    score = next(scores, None)
    return {} if score is None or bundle.ood is None else {"ood_score": float(score), "ood": bool(score > bundle.ood.threshold)}


def predict(
    bundle: ModelBundle,
    images: ImageLike | Iterable[ImageLike],
    batch_size: int = 32,
    device: str | torch.device = "auto",
    channel_axis: ChannelAxis = "auto",
    channels: list[int] | None = None,
    amp: bool = True,
    *,
    options: RunOptions | None = None,
) -> np.ndarray:
    """Class probabilities (N, K), one row per image or stack plane.

    ``images`` is one image (array, file path, napari layer) or an iterable of them;
    a stack contributes one row per plane.  Softmax for single-label models, sigmoid
    per class for multi-label ones.
    """
    o = run_options(options, device=device, batch_size=batch_size, channel_axis=channel_axis, channels=channels, amp=amp)
    return _stacked(predict_records(bundle, images, options=o), axis=0)


def predict_members(
    bundle: ModelBundle,
    images: ImageLike | Iterable[ImageLike],
    batch_size: int = 32,
    device: str | torch.device = "auto",
    channel_axis: ChannelAxis = "auto",
    channels: list[int] | None = None,
    amp: bool = True,
    *,
    options: RunOptions | None = None,
) -> np.ndarray:
    """Every ensemble member's class probabilities (M, N, K) — the input of the
    disagreement scores of :mod:`core.active`.  With soft voting their mean over
    members is :func:`predict`'s result.  Raises for a single network."""
    o = run_options(options, device=device, batch_size=batch_size, channel_axis=channel_axis, channels=channels, amp=amp)
    return _stacked(predict_records(bundle, images, members=True, options=o), axis=1)


def _stacked(records: Iterator[PlanePrediction], axis: int) -> np.ndarray:
    rows = [r.probs for r in records]
    if not rows:
        raise CellclassError("no images to predict", "pass at least one image")
    return np.stack(rows, axis=axis).astype(np.float32)


def preprocess(bundle: ModelBundle, image: ImageLike, channel_axis: ChannelAxis = "auto", channels: list[int] | None = None) -> torch.Tensor:
    """Exactly what the network sees for one image: a (C, h, w) float32 tensor on the CPU."""
    items = list(iter_planes_of(as_sources(image), bundle.in_chans, channel_axis, channels,
                                pick=LevelPick("classify", bundle.input_size)))
    if len(items) != 1:
        raise CellclassError(f"preprocess takes one image, got {len(items)} planes", "select one plane of the stack first")
    return network_inputs(bundle, [items[0].plane], [items[0].value_max], torch.device("cpu"))[0]


def label_of(probs: np.ndarray, bundle: ModelBundle) -> str:
    """The predicted class (single-label) or the ';'-joined present classes (multi-label)."""
    if bundle.multilabel:
        present = [c for c, p, t in zip(bundle.classes, probs, bundle.class_thresholds()) if p >= t]
        return ";".join(present)
    return bundle.classes[int(np.argmax(probs))]

