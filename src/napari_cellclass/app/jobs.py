"""The long-running work behind the docks, as plain generators (no Qt, no napari).

Each job yields :class:`Progress` objects (progress, plus results to show as soon as
they exist) and returns its outcome; a dock runs it in a napari ``thread_worker``,
a test or script can simply iterate it.  Closing the generator (a cancel) stops it
between batches, and the ``with`` blocks inside ``core`` release the model's lock
in the thread that ran it.  Torch and the engine are imported inside the jobs, so
importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, TYPE_CHECKING

import numpy as np

from ..core.progress import Progress, relay
from .layer_data import LayerSource, SourceInfo, frame_of
from .tables import PredictionRow, PredictionTable
from .session import ModelChoice, Session

if TYPE_CHECKING:
    from ..core.explain.result import ExplainResult
    from ..core.inference.options import RunOptions
    from ..core.models.bundle import ModelBundle
    from napari.layers import Layer
    from napari import Viewer
    from ..core.io.images import Layout


@dataclass
class InputOptions:
    """How to read the images: which axis holds channels and which channels to use."""

    channel_axis: Any = "auto"  # "auto" | "none" | int
    channels: list[int] | None = None
    #: an image with more channels than the model reads its first ones (the dock's picker says so)
    first_channels: bool = False
    level: int | None = None  # a pyramid's level for tiled maps/explanations (None: automatic)

    def run(self, session: Session, batch_size: int = 32) -> RunOptions:
        """These choices with the session's device: what the engine's entry points take."""
        from ..core.inference.options import RunOptions

        return RunOptions(device=session.device, batch_size=batch_size, channel_axis=self.channel_axis,
                          channels=None if self.channels is None else tuple(self.channels), level=self.level)


@dataclass
class Request:
    """One source layer, captured on the main thread."""

    source: LayerSource
    info: SourceInfo
    data_point: tuple[float, ...] | None = None  # layer.world_to_data(dims.point)
    channel_names: list[str] | None = None  # from the layer's metadata, when it names them
    channel_axis_hint: int | None = None  # the channel axis the layer's metadata settles ("auto" uses it)
    options: InputOptions | None = None  # this layer's own channel choice (the dock's picker), else the run's
    combined: bool = False  # several layers read as the channels of one input (placed on the first)


def effective(req: Request, options: InputOptions | None) -> InputOptions:
    """The options ``req`` is read with: its own choice, else the run's; "auto" takes the
    channel axis the layer's metadata gives."""
    from dataclasses import replace

    chosen = req.options or options or InputOptions()
    if chosen.channel_axis == "auto" and req.channel_axis_hint is not None:
        return replace(chosen, channel_axis=req.channel_axis_hint)
    return chosen


def fitted(options: InputOptions, layout: Any, bundle: ModelBundle) -> InputOptions:
    """``options`` for one image once the model is known: with ``first_channels``, an
    image with more channels than the model gives it its first ``in_chans``."""
    from dataclasses import replace

    if options.first_channels and options.channels is None and layout.channel_axis is not None \
            and layout.n_channels > bundle.in_chans:
        return replace(options, channels=list(range(bundle.in_chans)))
    return options


def make_request(viewer: Viewer, layer: Layer) -> Request:
    """Capture what a job needs from a napari layer (call on the main thread)."""
    from .layer_data import source_info

    from .channels import channel_names_of, metadata_channel_axis

    info = source_info(layer)
    point = tuple(float(v) for v in layer.world_to_data(viewer.dims.point))
    meta = layer.metadata
    return Request(LayerSource(layer.data, info.name, info.rgb), info, point, channel_names_of(meta),
                   metadata_channel_axis(info.shape, info.rgb, meta))


def make_combined_request(viewer: Viewer, layers: Sequence[Layer]) -> Request:
    """Same-shaped layers (one per channel, e.g. napari's ``channel_axis`` loading) as one
    multichannel input, channels in layer order; placed like the first layer."""
    from dataclasses import replace

    from .channels import SAMPLE_KEY, ChannelStack, combine_check, combined_name
    from .layer_data import source_info

    infos = [source_info(layer) for layer in layers]
    shape = combine_check([i.name for i in infos], [i.shape for i in infos], [i.rgb for i in infos])
    groups = [(layer.metadata.get(SAMPLE_KEY) or {}).get("group") for layer in layers]
    name = combined_name([i.name for i in infos], groups)
    axis = len(shape) - 2  # (C, H, W), or (T, C, H, W) for stacks
    first = infos[0]
    point = tuple(float(v) for v in layers[0].world_to_data(viewer.dims.point))
    source = LayerSource(ChannelStack([layer.data for layer in layers], axis), name, False)
    return Request(source, replace(first, name=name), point, [i.name for i in infos], axis, combined=True)


@dataclass
class LayerFailure:
    name: str
    message: str


@dataclass
class LayerPredictions:
    name: str
    layout: Any  # core.images.Layout
    rows: list[PredictionRow]
    classes: list[str]


@dataclass
class ClassifyOutcome:
    table: PredictionTable
    model_card: str
    failures: list[LayerFailure] = field(default_factory=list)


@dataclass
class TiledMap:
    request: Request
    layout: Any
    frame: int
    probabilities: np.ndarray  # (K, H', W')
    grid: Any  # core.tiling.TileGrid
    classes: list[str]
    model: str


@dataclass
class Explanation:
    request: Request
    layout: Any
    frame: int
    result: Any  # core.explain.ExplainResult
    plane: np.ndarray  # the explained frame as float32 (C, H, W), for the channel grid
    channel_names: list[str]
    #: a pyramid's map cells in level-0 pixels (scale, translate); None: the map covers the plane
    placement: tuple[tuple[float, float], tuple[float, float]] | None = None
    #: the layer data to add, made in the worker: the map layer(s) and the channel-grid pairs
    maps: list[Any] = field(default_factory=list)
    pairs: list[Any] = field(default_factory=list)


def model_id(choice: ModelChoice) -> str:
    """How tables and layers name the model that produced them."""
    if choice.kind == "file" and choice.path:
        from pathlib import Path

        return Path(choice.path).name
    return choice.label


def load_bundle(session: Session) -> Generator[Progress, None, tuple[Any, str]]:
    yield Progress(0, 0, message=f"loading {session.choice.label}")
    choice = session.choice
    bundle = session.load(choice)
    return bundle, model_id(choice)


def load_job(session: Session) -> Generator[Progress, None, str]:
    """Load the session's current model; returns its model card."""
    bundle, _ = yield from load_bundle(session)
    return bundle.card()


def _layouts(bundle: ModelBundle, requests: Sequence[Request], options: InputOptions) -> tuple[list[tuple[Request, Any]], list[LayerFailure]]:
    from ..core.errors import CellclassError
    from ..core.io.images import inspect
    from .channels import for_docks

    good, failures = [], []
    for req in requests:
        try:
            axis = effective(req, options).channel_axis
            layout, _ = inspect(req.source.data, axis, bundle.in_chans, req.source.rgb, req.info.name)
            good.append((req, layout))
        except CellclassError as err:
            failures.append(LayerFailure(req.info.name, str(for_docks(err))))
    return good, failures


def classify_job(
    session: Session, requests: Sequence[Request], batch_size: int = 32, options: InputOptions | None = None,
) -> Generator[Progress, None, ClassifyOutcome]:
    """Classify every plane of every requested layer; yields a :class:`LayerPredictions`
    per finished layer and a :class:`LayerFailure` per layer that cannot be read."""
    from ..core.errors import CellclassError
    from ..core.inference.predict import label_of, predict_records
    from .channels import dock_text, for_docks

    options = options or InputOptions()
    bundle, model = yield from load_bundle(session)
    table = PredictionTable(list(bundle.classes), model)
    todo, failures = _layouts(bundle, requests, options)
    for f in failures:
        yield Progress(0, 0, item=f)
    total, done = sum(layout.n_frames for _, layout in todo), 0
    yield Progress(0, total, message="classifying")
    for req, layout in todo:
        rows: list[PredictionRow] = []
        try:
            # "skip": a plane that cannot be read (a broken file in a folder stack) becomes
            # a notification for that frame, and the layer's other frames are still classified
            records = predict_records(bundle, req.source, on_error="skip",
                                      options=fitted(effective(req, options), layout, bundle).run(session, batch_size))
            unreadable = []
            with closing(records):
                for rec in records:
                    done += 1
                    if rec.error is not None:
                        unreadable.append(rec)
                        continue
                    rows.append(table.add(req.info.name, rec.frame, label_of(rec.probs, bundle), rec.probs,
                                          rec.ood_score, rec.ood))
                    yield Progress(done, total)
            if not rows:  # nothing usable: one message for the layer, as for any other bad layer
                raise CellclassError(dock_text(unreadable[0].error) if unreadable else f"'{req.info.name}' has no frames")
            for rec in unreadable:
                yield Progress(done, total, item=LayerFailure(f"{req.info.name}, frame {rec.frame}", dock_text(rec.error)))
        except CellclassError as err:
            failure = LayerFailure(req.info.name, str(for_docks(err)))
            failures.append(failure)
            table.replace_layer(req.info.name, [])
            done += layout.n_frames - len(rows)
            yield Progress(done, total, item=failure)
            continue
        yield Progress(done, total, item=LayerPredictions(req.info.name, layout, rows, list(bundle.classes)))
    if not table.rows and failures:
        raise CellclassError(
            f"no layer could be classified ({len(failures)} failed); first: {failures[0].message}"
        )
    return ClassifyOutcome(table, bundle.card(), failures)


def tiled_map_job(
    session: Session, requests: Sequence[Request], tile: int | None = None, overlap: float = 0.5,
    batch_size: int = 32, options: InputOptions | None = None,
) -> Generator[Progress, None, list[TiledMap]]:
    """A sliding-window probability map of the current frame of each layer."""
    from ..core.errors import CellclassError
    from ..core.inference.tiling import predict_map_steps, tile_grid

    options = options or InputOptions()
    bundle, model = yield from load_bundle(session)
    todo, failures = _layouts(bundle, requests, options)
    for f in failures:
        yield Progress(0, 0, item=f)
    size = tile or bundle.input_size
    levels = [map_level(bundle, req, effective(req, options), session, batch_size) for req, _ in todo]  # pyramids: the tiled level
    batches = [-(-tile_grid(hw or (layout.height, layout.width), size, overlap).n_tiles // batch_size)
               for (_, layout), (_, hw) in zip(todo, levels)]
    total, done, maps = sum(batches), 0, []
    for i, ((req, layout), n) in enumerate(zip(todo, batches)):
        frame = frame_of(layout, req.data_point)
        steps = predict_map_steps(bundle, req.source, size, overlap, frame=frame,
                                  options=fitted(effective(req, options), layout, bundle).run(session, batch_size))
        try:
            start = done
            # the bar counts batches across all layers; each report says the tiles done in this one
            prob, grid = yield from relay(steps, lambda p: Progress(start + -(-p.done // batch_size), total))
            done = start + batches[i]
        except CellclassError as err:
            failures.append(LayerFailure(req.info.name, str(err)))
            done = sum(batches[: i + 1])
            yield Progress(done, total, item=failures[-1])
            continue
        if levels[i][0] is not None:  # the map is in the level's pixels: place it over level 0
            from ..core.inference.levels import LevelGrid

            grid = LevelGrid(grid, levels[i][0])
        tiled = TiledMap(req, layout, frame, prob, grid, list(bundle.classes), model)
        maps.append(tiled)
        yield Progress(done, total, item=tiled)
    if not maps and failures:
        raise CellclassError(f"no probability map could be made; first: {failures[0].message}")
    return maps


def map_level(bundle: ModelBundle, req: Request, options: InputOptions, session: Session,
              batch_size: int) -> tuple[Any, tuple[int, int] | None]:
    """The pyramid level a tiled map of ``req`` reads and its plane's size; (None, None)
    for a single-resolution layer."""
    from ..core.errors import CellclassError
    from ..core.inference.levels import chosen_level, level_hw, map_pick

    try:
        level = chosen_level(req.source, map_pick(bundle, options.run(session, batch_size)), options.channel_axis)
    except CellclassError:
        return None, None  # the run itself reports it, for this layer only
    if level is None:
        return None, None
    return level, level_hw(level, options.channel_axis, req.source.rgb, bundle.in_chans)


def explain_job(
    session: Session, request: Request, method: str = "gradcam", target: str | None = None,
    cam_layer: str | None = None, tile: int | None = None, options: InputOptions | None = None,
    fcn_models_use_fcn: bool = False, grid: bool = False,
) -> Generator[Progress, None, Explanation]:
    """Explanation maps of the current frame of one layer (Grad-CAM family or FCN).
    ``tile``: None = whole image, 0 = tiles of the model's input size, n = n px tiles.
    ``fcn_models_use_fcn``: the method was not chosen for this model, so an FCN model
    (known only once loaded) shows its own maps."""
    from ..core.errors import ImageError
    from ..core.explain import explain_steps
    from ..core.io.images import get_plane
    from .channels import for_docks

    options = effective(request, options)
    bundle, _ = yield from load_bundle(session)
    if fcn_models_use_fcn and bundle.is_fcn:
        method = "fcn"
    todo, failures = _layouts(bundle, [request], options)
    if failures:
        raise ImageError(failures[0].message)
    layout = todo[0][1]
    options = fitted(options, layout, bundle)
    frame = frame_of(layout, request.data_point)
    yield Progress(0, 0, message=f"explaining '{request.info.name}'" + (f", frame {frame}" if layout.is_stack else ""))
    if tile is not None and tile <= 0:  # 0 = "model input size": tiles as large as the network's input
        tile = tuple(int(v) for v in bundle.input_size)
    steps = explain_steps(bundle, [request.source], method, target, cam_layer or None, tile, frame=frame,
                          options=options.run(session, batch_size=16))
    try:
        with closing(steps):
            result = (yield from steps)[0]
    except ImageError as err:  # a channel mismatch: point at the dock's picker, not the API
        raise for_docks(err) from err
    level, placement = _explained_level(bundle, request, options, session, tile, result)
    data, lay = (request.source.data, layout) if level is None else level
    plane = get_plane(data, lay, frame, request.info.name)
    out = Explanation(request, layout, frame, result, plane, _channel_names(bundle, layout, options, request.channel_names),
                      placement)
    from .explain_layers import explanation_tuples

    out.maps, out.pairs = explanation_tuples(out, grid)  # here, off the Qt thread
    return out


def _explained_level(bundle: ModelBundle, request: Request, options: InputOptions, session: Session,
                     tile: int | None, result: ExplainResult) -> tuple[Any, Any]:
    """For a pyramid: (level data, its layout) and where the maps' cells sit in level-0 pixels."""
    from ..core.inference.levels import chosen_level, classify_pick, map_pick
    from ..core.io.images import inspect

    run = options.run(session, batch_size=16)
    pick = classify_pick(bundle) if tile is None else map_pick(bundle, run)
    level = chosen_level(request.source, pick, options.channel_axis)
    if level is None:
        return None, None
    lay, _ = inspect(level.data, options.channel_axis, bundle.in_chans, request.source.rgb, request.info.name)
    h, w = np.asarray(result.maps).shape[-2:]
    sy, sx = lay.height / h, lay.width / w  # map cells in level pixels, as place_map's default
    return (level.data, lay), level.to_level0((sy, sx), ((sy - 1) / 2, (sx - 1) / 2))


def _channel_names(bundle: ModelBundle, layout: Layout, options: InputOptions, from_layer: list[str] | None = None) -> list[str]:
    """Names for the source's channels: the layer's own, else the model's where they map
    one to one, else ``channel i``."""
    n = layout.n_channels
    if from_layer is not None and len(from_layer) == n:
        return list(from_layer)
    names = [f"channel {i}" for i in range(n)]
    generic = list(bundle.channel_names) == [f"channel {i}" for i in range(bundle.in_chans)]
    if generic:
        return names
    if options.channels is not None and len(options.channels) == bundle.in_chans:
        for model_name, i in zip(bundle.channel_names, options.channels):
            if 0 <= i < n:
                names[i] = model_name
        return names
    return list(bundle.channel_names) if n == bundle.in_chans else names
