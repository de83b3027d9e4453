"""The model file: one ``.safetensors`` file, tensors plus JSON, never pickle.

The network's tensors go in the safetensors body; the header's metadata holds,
under ``napari_cellclass``, a JSON document with classes, output mode, thresholds,
channels, preprocessing, architecture and provenance.  Loading parses JSON and raw
tensors only — nothing is ever unpickled — then rebuilds the network from the
registry, so a tampered file can at worst fail to load, with a message that says why.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomicfile import fsync_folder, publish_mode
from ..errors import ArchitectureError, ModelFileError
from ..io.preprocess import Preprocess
from . import bioimageio_trainable, limits, ood
from .bundle import FORMAT, FORMAT_VERSION, ModelBundle
from .registry import build_network
from .spec import ArchSpec

META_KEY = "napari_cellclass"  # (bioimageio_trainable, imported above, registers its family)
_MAX_HEADER = 100 * 1024 * 1024


def now() -> str:
    """UTC time to the second, as model files record it."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def is_model_file(path: Path) -> bool:
    """Whether ``path`` is a napari-cellclass model (not just any safetensors file)."""
    try:
        return META_KEY in (read_header(path).get("__metadata__") or {})
    except ModelFileError:
        return False


def save_model(bundle: ModelBundle, path: str | os.PathLike) -> Path:
    """Write ``bundle`` atomically: a crash or full disk never leaves a half file."""
    from safetensors import SafetensorError
    from safetensors.torch import save_model as st_save_model

    target = Path(path)
    if target.suffix != ".safetensors":
        target = target.with_suffix(target.suffix + ".safetensors") if target.suffix else target.with_suffix(".safetensors")
    bundle = bioimageio_trainable.model_file_bundle(bundle)  # a package's timm network: its own family
    meta = bundle.metadata()
    meta["provenance"] = {**meta["provenance"], "saved": now()}
    tmp: str | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        with bundle.lock:
            # contiguous CPU copies: a model living on the GPU saves the same bytes
            st_save_model(_StateWithOod(bundle), tmp, metadata={META_KEY: json.dumps(meta)}, force_contiguous=True)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        publish_mode(tmp, target)
        os.replace(tmp, target)
        fsync_folder(target.parent)
    except (OSError, SafetensorError) as err:  # safetensors reports a full disk as SafetensorError
        text = str(err)
        full = "No space left" in text or "code: 28" in text or "StorageFull" in text
        reason = (err.strerror or text) if isinstance(err, OSError) else "No space left on device" if full else text[:200]
        raise ModelFileError(
            f"cannot write the model to {target} ({reason})",
            "choose a writable folder with free space; any previous file there is unchanged",
        ) from err
    finally:
        if tmp is not None and Path(tmp).exists():
            Path(tmp).unlink(missing_ok=True)
    return target


def read_header(path: Path) -> dict[str, Any]:
    """Parse the safetensors header by hand, so foreign files get a precise message."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(9)
        n = struct.unpack("<Q", head[:8])[0] if len(head) >= 8 else -1
        looks_safetensors = len(head) == 9 and head[8:9] == b"{" and 8 + n <= size
        if not looks_safetensors and (head[:2] == b"PK" or (head[:1] == b"\x80" and head[1:2] in b"\x02\x03\x04\x05")):
            raise ModelFileError(
                f"{path} is a PyTorch pickle checkpoint, not a napari-cellclass model; it was not opened because "
                "unpickling a file can run arbitrary code",
                "to start from its weights, pass it as weights=PATH to build_model / --weights PATH to `cellclass train`",
            )
        if len(head) < 9:
            raise ModelFileError(f"{path} is too short to be a model file ({size} bytes)", "the file is truncated; copy it again")
        if n > _MAX_HEADER or 8 + n > size or not looks_safetensors:
            raise ModelFileError(
                f"{path} is not a valid safetensors model file (header of {n} bytes in a {size}-byte file)",
                "the file is truncated or of another type; copy it again or re-save the model",
            )
        fh.seek(8)
        try:
            header = json.loads(fh.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
            raise ModelFileError(f"{path} has a corrupt header ({str(err)[:200]})", "re-save the model") from err
    if not isinstance(header, dict):
        raise ModelFileError(f"{path} has a corrupt header", "re-save the model")
    limits.check_header_entries(header, str(path))
    end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        raise ModelFileError(
            f"{path} is truncated: its tensors need {8 + n + end} bytes but the file has {size}",
            "copy the file again or re-save the model",
        )
    return header


def load_model(path: str | os.PathLike, device: str | torch.device | None = None) -> ModelBundle:
    """Read a model file written by :func:`save_model`; never executes code from it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    from .bioimageio_import import is_package, load_package

    if is_package(p):  # a bioimage.io model package (zip, rdf.yaml or its folder)
        return load_package(p, device, bundle_from_metadata)
    if p.is_dir():
        raise ModelFileError(f"{p} is a folder, not a model file", "give the path of a .safetensors model file")
    if not p.is_file():
        raise ModelFileError(f"model file {p} does not exist", "check the path")
    header = read_header(p)
    raw = (header.get("__metadata__") or {}).get(META_KEY)
    if raw is None:
        raise ModelFileError(
            f"{p} is a safetensors file but not a napari-cellclass model (no '{META_KEY}' metadata)",
            "to start from these weights, pass the file as weights=PATH to build_model / --weights to `cellclass train`",
        )
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as err:
        raise ModelFileError(f"{p}: the model metadata is not valid JSON ({str(err)[:200]})", "re-save the model") from err
    if not isinstance(meta, dict):
        raise ModelFileError(f"{p}: the model metadata is not a JSON object", "re-save the model")
    limits.check_sizes(meta, str(p))
    bundle = bundle_from_metadata(meta, str(p), available=limits.file_numel(header))
    try:
        state = load_file(str(p), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelFileError(f"{p}: cannot read the tensors ({err})", "the file is damaged; copy it again") from err
    bundle.ood = ood.stats_from_tensors(ood.split_tensors(state), meta, ood.feature_dim(bundle.network),
                                        bundle.num_classes, str(p), bundle.network, bundle.in_chans)
    bundle.calibration = _calibration(meta, str(p))
    _load_state(bundle.network, state, p)
    bundle.network.eval()
    if device is not None:
        from ..device import resolve_device

        bundle.network.to(resolve_device(device))
    bundle.provenance = {**bundle.provenance, "loaded_from": str(p)}
    return bundle


def bundle_from_metadata(meta: dict[str, Any], where: str = "model file", available: int | None = None) -> ModelBundle:
    """Rebuild a bundle (random weights) from the JSON a model file carries; with
    ``available`` (the file's tensor elements) a network needing more is refused
    before it is built."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{where}: metadata does not describe a napari-cellclass model", "re-save the model")
    version = meta.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFileError(f"{where}: format_version {version!r} is not a number", "re-save the model")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{where} was written by a newer napari-cellclass (format {meta.get('format_version')})",
            "update napari-cellclass to load it",
        )
    try:
        classes = [str(c) for c in meta["classes"]]
        output = str(meta["output"])
        in_chans = int(meta["in_chans"])
        thresholds = meta.get("thresholds")
        thresholds = None if thresholds is None else [float(t) for t in thresholds]
        channel_names = [str(c) for c in meta.get("channel_names") or []]
        provenance = dict(meta.get("provenance") or {})
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFileError(f"{where}: the model metadata is incomplete or has wrong types ({err!r})", "re-save the model") from err
    preprocess = Preprocess.from_dict(meta.get("preprocess") or {})
    arch = ArchSpec.from_dict(meta.get("arch") or {})
    try:
        if available is not None:
            limits.check_parameter_count(arch, in_chans, len(classes), output, available, where)
        network = build_network(arch, in_chans, len(classes), output)
        return ModelBundle(network, classes, output, in_chans, preprocess, arch, channel_names, thresholds, provenance)
    except ArchitectureError as err:
        raise ModelFileError(f"{where}: the metadata is inconsistent ({err})", "re-save the model") from err


def _load_state(network: nn.Module, state: dict[str, torch.Tensor], where: Path) -> None:
    limits.check_finite(state, str(where))
    expected = network.state_dict()
    missing = [k for k in expected if k not in state]
    # safetensors drops tensors that share memory with another; they come back by name
    shared = _shared_aliases(network)
    missing = [k for k in missing if k not in shared]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k}: file {tuple(state[k].shape)} vs architecture {tuple(expected[k].shape)}"
             for k in state if k in expected and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append(f"{len(wrong)} tensor(s) of the wrong shape (e.g. {wrong[0]})")
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise ModelFileError(
            f"{where}: the tensors do not fit the architecture in its metadata: " + "; ".join(parts),
            "the file was altered or assembled by hand; re-save the model from napari-cellclass",
        )
    network.load_state_dict(state, strict=False)


def _shared_aliases(network: nn.Module) -> set[str]:
    seen: dict[int, str] = {}
    aliases: set[str] = set()
    for name, t in network.state_dict(keep_vars=True).items():
        ptr = t.data_ptr() if t.numel() else -1
        if ptr in seen and ptr != -1:
            aliases.add(name)
        else:
            seen[ptr] = name
    return aliases


class _StateWithOod(nn.Module):
    """The network's state plus the OOD tensors, as one state dict for safetensors."""

    def __init__(self, bundle: ModelBundle) -> None:
        super().__init__()
        self._bundle = bundle

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        b = self._bundle
        return {**b.network.state_dict(), **(b.ood.tensors() if b.ood is not None else {})}


def _calibration(meta: dict[str, Any], where: str) -> dict[str, Any] | None:
    cal = meta.get("calibration")
    if cal is None:
        return None
    t = cal.get("temperature") if isinstance(cal, dict) else None
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not 0.0 < float(t) < float("inf"):
        raise ModelFileError(f"{where}: the calibration temperature {t!r} is not a positive finite number",
                             "retrain or fine-tune the model to fit a new one, or re-save it from napari-cellclass")
    return dict(cal)
