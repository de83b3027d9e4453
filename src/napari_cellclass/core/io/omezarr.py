"""OME-Zarr (OME-NGFF 0.4 and 0.5) images as lazy :class:`~.multiscale.Pyramid`\\ s.

ome-zarr-py reads the metadata (axes, the pyramid's datasets and their scale and
translation, the omero channel labels) and gives each level as a dask array over
the zarr array, so nothing but the chunks a tile touches is ever read.  Time and z
axes of length 1 are dropped (lazily) so a ``tczyx`` store of one plane reads as
``cyx``.  Every failure is an :class:`ImageError` naming the store and the fix.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ..errors import ImageError
from .multiscale import Level, Pyramid

MissingChunks = str  # "error" | "fill"


def _import():
    try:
        import zarr  # noqa: F401
        from ome_zarr.io import parse_url
        from ome_zarr.reader import Multiscales, Reader
    except ImportError as err:
        raise ImageError("reading OME-Zarr needs ome-zarr-py and zarr, which are not installed",
                         "pip install 'napari-cellclass[zarr]'") from err
    return parse_url, Reader, Multiscales


def _nodes(where: str) -> list[Any]:
    parse_url, Reader, _ = _import()
    remote = "://" in where
    if not remote and not os.path.exists(where):
        raise ImageError(f"{where}: no such Zarr store", "check the path")
    io_log = logging.getLogger("ome_zarr.io")
    level = io_log.level
    io_log.setLevel(logging.ERROR)  # it warns when the store's NGFF version is not the newest: not a problem
    try:
        loc = parse_url(where, mode="r")
        if loc is None:
            raise ImageError(f"{where}: not a Zarr store (no zarr.json, .zgroup or .zattrs in it)",
                             "check the path; an OME-Zarr image is a folder such as image.ome.zarr")
        return list(Reader(loc)())
    except ImageError:
        raise
    except Exception as err:  # aiohttp/fsspec/zarr raise many kinds; all mean "cannot read it"
        if remote:
            raise ImageError(f"{where}: cannot read the remote store ({type(err).__name__}: {str(err)[:160]})",
                             "check the network (are you offline?) and the URL, or copy the store to disk and pass its folder") from err
        raise ImageError(f"{where}: cannot read the Zarr store ({type(err).__name__}: {str(err)[:160]})",
                         "the store is damaged or incomplete; re-copy or re-export it") from err
    finally:
        io_log.setLevel(level)


def _transforms(meta: dict[str, Any], k: int, ndim: int) -> tuple[list[float], list[float]]:
    scale, trans = [1.0] * ndim, [0.0] * ndim
    cts = meta.get("coordinateTransformations") or []
    for t in (cts[k] if k < len(cts) else []):
        if t.get("type") == "scale" and len(t.get("scale", [])) == ndim:
            scale = [float(v) for v in t["scale"]]
        elif t.get("type") == "translation" and len(t.get("translation", [])) == ndim:
            trans = [float(v) for v in t["translation"]]
    return scale, trans


def _check_chunks(where: str, paths: list[str], missing_chunks: MissingChunks) -> None:
    """zarr reads a chunk that is not there as the fill value; say so instead of classifying zeros."""
    if missing_chunks == "fill" or "://" in where:
        return
    import zarr

    group = zarr.open_group(where, mode="r")
    for k, p in enumerate(paths):
        arr = group[p]
        have, want = arr.nchunks_initialized, arr.nchunks
        if have < want:
            raise ImageError(
                f"{where}: level {k} ('{p}') is missing {want - have} of its {want} chunks (deleted, or the copy is incomplete)",
                "re-copy the store; if its writer leaves out empty chunks on purpose, pass missing_chunks='fill'")


def read_omezarr(path: str | os.PathLike, missing_chunks: MissingChunks = "error") -> Pyramid:
    """The first multiscale image of an OME-Zarr store (folder or URL), levels lazy."""
    where = os.fspath(path)
    _, _, Multiscales = _import()
    nodes = _nodes(where)
    image = next((n for n in nodes if any(isinstance(s, Multiscales) for s in n.specs)), None)
    if image is None:
        raise ImageError(f"{where}: a Zarr store without OME-NGFF multiscales metadata",
                         "write it with ome-zarr-py (ome_zarr.writer.write_image), or open the array with zarr "
                         "and pass it as an array")
    meta = image.metadata
    axes = [a["name"] if isinstance(a, dict) else str(a) for a in meta.get("axes") or []]
    data = list(image.data)
    if not axes:  # NGFF 0.3 and older do not name axes; read them by shape
        axes = list("tczyx"[-data[0].ndim:])
    keep = [i for i, a in enumerate(axes) if a not in ("t", "z") or data[0].shape[i] > 1]
    index = tuple(slice(None) if i in keep else 0 for i in range(len(axes)))
    kept_axes = "".join(axes[i] for i in keep)
    if "y" not in kept_axes or "x" not in kept_axes:
        raise ImageError(f"{where}: the image's axes {''.join(axes)} have no y and x", "only images with y and x axes can be classified")
    spec = next(s for s in image.specs if isinstance(s, Multiscales))
    _check_chunks(where, list(spec.datasets), missing_chunks)
    levels = []
    s0, t0 = _transforms(meta, 0, len(axes))
    sy0, sx0 = s0[axes.index("y")], s0[axes.index("x")]
    for k, arr in enumerate(data):
        s, t = _transforms(meta, k, len(axes))
        sy, sx, ty, tx = s[axes.index("y")], s[axes.index("x")], t[axes.index("y")], t[axes.index("x")]
        lazy = arr[index] if len(keep) < len(axes) else arr
        levels.append(Level(k, lazy, (sy / sy0, sx / sx0), ((ty - t0[axes.index("y")]) / sy0, (tx - t0[axes.index("x")]) / sx0),
                            (sy, sx)))
    names = [str(n) for n in meta.get("channel_names") or []]
    channel_axis: Any = kept_axes.index("c") if "c" in kept_axes else "none"
    unit = next((a.get("unit") for a in meta.get("axes") or [] if isinstance(a, dict) and a.get("name") == "x"), None)
    name = os.path.basename(where.rstrip("/\\")) or where
    return Pyramid(levels, name, channel_axis, False, names, kept_axes, unit)
