"""explain / explain_batch / explain_steps: images in, maps on the images' own grid out.

Flow per batch: canonical planes → the model's preprocessing (the geometry of the
resize / letterbox / crop is kept) → raw maps on the feature grid of every member
and layer ("views") → back onto the source grid with ``Geometry.to_source`` →
each view divided by its maximum over the whole image → mean over views.  Tiled
mode cuts the image with :func:`core.tiling.tile_grid` (75 % overlap by default),
blends overlapping tiles with a Hann window *before* normalising once over the whole
map, so tiles share one scale and a tile's own edge pattern does not repeat as a
lattice; the target is the whole image's prediction, the class Classify reports.

The network is used under ``bundle.lock`` in eval mode; its train/eval flags and
device are restored afterwards and hooks never outlive a batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterable, Sequence

import torch

from ..models.bundle import ModelBundle
from ..errors import CellclassError
from ..io.images import ChannelAxis
from ..inference.options import RunOptions, run_options
from ..inference.predict import ImageLike, as_sources
from ..inference.tiling import tile_grid
from .result import ExplainResult, Progress
from .targets import Target, layer_list, method_name
from ..progress import drain

from ..inference.levels import classify_pick, map_pick
from .passes import explain_whole, open_source, using_model
from .tiled import explain_tiled, tiled_work


# --------------------------------------------------------------------------- public API
def explain_steps(
    bundle: ModelBundle,
    sources: ImageLike | Iterable[ImageLike],
    method: str = "gradcam",
    target: Target = None,
    layer: str | Sequence[str] | None = None,
    tile: int | tuple[int, int] | None = None,
    *,
    device: str | torch.device | None = None,
    channel_axis: ChannelAxis = "auto",
    channels: list[int] | None = None,
    frame: int = 0,
    overlap: float = 0.5,
    batch_size: int = 16,
    targets: Sequence[Target] | None = None,
    options: RunOptions | None = None,
) -> Generator[Progress, None, list[ExplainResult]]:
    """Generator form of :func:`explain_batch`: yields :class:`Progress` after every
    batch (units: images, or tiles in tiled mode) and returns one result per source.
    Closing it stops between batches; the lock, hooks and model state are released.
    ``options`` replaces ``device``, ``batch_size``, ``channel_axis`` and ``channels``
    (maps are computed in float32: ``amp`` does not apply)."""
    if options is not None:
        o = run_options(options)
        device, batch_size, channel_axis, channels = o.device, o.batch_size, o.channel_axis, o.channel_list
    method = method_name(method)
    layers = layer_list(layer)
    if batch_size < 1:
        raise CellclassError(f"batch size must be at least 1, got {batch_size}")
    # a pyramid: whole-image explanations read the classification level, tiled ones the map level
    pick = classify_pick(bundle) if tile is None else map_pick(bundle, options)
    srcs = [open_source(src, i, bundle, channel_axis, channels, frame, pick) for i, src in enumerate(as_sources(sources))]
    if not srcs:
        raise CellclassError("no images to explain", "pass at least one image")
    specs = list(targets) if targets is not None else [target] * len(srcs)
    if len(specs) != len(srcs):
        raise CellclassError(f"{len(specs)} targets for {len(srcs)} images", "give one target per image")
    results: list[ExplainResult] = []
    with using_model(bundle, device) as dev:
        if tile is None:
            total = len(srcs)
            yield Progress(0, total)
            for b0 in range(0, total, batch_size):
                batch = srcs[b0:b0 + batch_size]
                results.extend(explain_whole(bundle, batch, specs[b0:b0 + batch_size], method, layers, channels, frame, dev))
                yield Progress(len(results), total)
            return results
        grids = [tile_grid((s.layout.height, s.layout.width), tile, overlap).n_tiles for s in srcs]
        total = sum(tiled_work(n, method) for n in grids)
        done = 0
        yield Progress(0, total)
        for s, sp in zip(srcs, specs):
            steps = explain_tiled(bundle, s, sp, method, layers, channels, frame, dev, tile, overlap, batch_size)
            with contextlib.closing(steps):
                while True:
                    try:
                        done += next(steps)
                    except StopIteration as stop:
                        results.append(stop.value)
                        break
                    yield Progress(done, total)
    return results


def _run(steps: Generator[Progress, None, list[ExplainResult]]) -> list[ExplainResult]:
    with contextlib.closing(steps):
        return drain(steps)


def explain(
    bundle: ModelBundle,
    image: ImageLike,
    method: str = "gradcam",
    target: Target = None,
    layer: str | Sequence[str] | None = None,
    tile: int | tuple[int, int] | None = None,
    *,
    device: str | torch.device | None = None,
    channel_axis: ChannelAxis = "auto",
    channels: list[int] | None = None,
    frame: int = 0,
    overlap: float = 0.5,
    options: RunOptions | None = None,
) -> ExplainResult:
    """Explanation maps of one image (frame ``frame`` of a stack) on its own pixel grid.

    ``method``: gradcam | gradcam++ | layercam | hirescam | cam | fcn.  ``target``:
    None (the predicted class; every present class of a multi-label model), a class
    name or index, a list of them, or ``"all"``.  ``layer``: a module name (see
    ``target_layers.layer_names``), several (a list or 'a,b': maps fused), or None
    for the automatic last spatial stage.  ``tile``: explain in tiles of that many
    source pixels (sliding window, ``overlap``) for a high-resolution map.
    ``device``: None keeps the model where it is.  ``options``: a RunOptions in place of
    ``device``, ``channel_axis`` and ``channels``.
    """
    return _run(explain_steps(bundle, [image], method, target, layer, tile, device=device, channel_axis=channel_axis,
                              channels=channels, frame=frame, overlap=overlap, options=options))[0]


def explain_batch(
    bundle: ModelBundle,
    images: Iterable[ImageLike],
    method: str = "gradcam",
    target: Target = None,
    layer: str | Sequence[str] | None = None,
    tile: int | tuple[int, int] | None = None,
    *,
    targets: Sequence[Target] | None = None,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    channel_axis: ChannelAxis = "auto",
    channels: list[int] | None = None,
    frame: int = 0,
    overlap: float = 0.5,
    options: RunOptions | None = None,
) -> list[ExplainResult]:
    """:func:`explain` for many images, ``batch_size`` per forward/backward pass.

    ``targets`` gives one target per image (e.g. each image's true classes), instead
    of the one ``target`` for all.
    """
    return _run(explain_steps(bundle, images, method, target, layer, tile, device=device, channel_axis=channel_axis,
                              channels=channels, frame=frame, overlap=overlap, batch_size=batch_size, targets=targets,
                              options=options))
