"""ModelBundle — the one object that crosses every boundary — and its file format.

A model file is a single ``.safetensors`` file: the network's tensors plus, in the
header's metadata under ``napari_cellclass``, a JSON document with classes,
output mode, thresholds, channels, preprocessing, architecture and provenance.
Loading parses JSON and raw tensors only — nothing is ever unpickled — then
rebuilds the network from the registry, so a tampered file can at worst fail to
load, with a message that says why.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import struct
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomicfile import fsync_folder, publish_mode
from .errors import ArchitectureError, ModelFileError
from .models.heads import OUTPUT_MODES, HeadSpec
from .models.registry import (ArchSpec, arch_entry, build_network, check_input_size, ensemble_spec, pretrained_mean_std,
                              with_head)
from .preprocess import Normalization, Preprocess

FORMAT = "napari-cellclass-model"
FORMAT_VERSION = 1
META_KEY = "napari_cellclass"
_MAX_HEADER = 100 * 1024 * 1024


@dataclass(eq=False)
class ModelBundle:
    network: nn.Module
    classes: list[str]
    output: str  # softmax | sigmoid | binary
    in_chans: int
    preprocess: Preprocess
    arch: ArchSpec
    channel_names: list[str] = field(default_factory=list)
    thresholds: list[float] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    #: held by anything that runs or changes the network (explain, fine-tune, predict)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def __post_init__(self) -> None:
        if self.output not in OUTPUT_MODES:
            raise ArchitectureError(f"unknown output mode {self.output!r}", f"use one of {', '.join(OUTPUT_MODES)}")
        if len(set(self.classes)) != len(self.classes):
            raise ArchitectureError(f"class names must be unique, got {self.classes}")
        if not self.channel_names:
            self.channel_names = [f"channel {i}" for i in range(self.in_chans)]
        if len(self.channel_names) != self.in_chans:
            raise ArchitectureError(f"{len(self.channel_names)} channel names for {self.in_chans} channels")
        if self.thresholds is not None and len(self.thresholds) != len(self.classes):
            raise ArchitectureError(f"{len(self.thresholds)} thresholds for {len(self.classes)} classes")

    @property
    def multilabel(self) -> bool:
        return self.output == "sigmoid"

    @property
    def input_size(self) -> tuple[int, int]:
        return self.preprocess.input_size

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def device(self) -> torch.device:
        p = next(self.network.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    @property
    def is_fcn(self) -> bool:
        return bool(getattr(self.network, "is_fcn", False))

    def class_thresholds(self) -> list[float]:
        """Decision thresholds per class (0.5 unless training chose them)."""
        return list(self.thresholds) if self.thresholds is not None else [0.5] * len(self.classes)

    def metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "classes": list(self.classes),
            "output": self.output,
            "multilabel": self.multilabel,
            "thresholds": self.thresholds,
            "in_chans": self.in_chans,
            "channel_names": list(self.channel_names),
            "preprocess": self.preprocess.to_dict(),
            "arch": self.arch.to_dict(),
            "provenance": self.provenance,
        }

    def card(self) -> str:
        """Human-readable summary: what `cellclass info` prints and the viewer's model card shows."""
        pre = self.preprocess
        norm = pre.normalization
        prov = self.provenance
        lines = [
            f"classes ({len(self.classes)}, {'multi-label' if self.multilabel else 'single-label'}): {', '.join(self.classes)}",
            f"architecture: {self.arch.describe()}",
            f"input: {self.in_chans} channel(s) [{', '.join(self.channel_names)}], {pre.input_size[0]}x{pre.input_size[1]} px, "
            f"resize '{pre.resize}' ({pre.interpolation})",
            f"normalisation: {norm.method}" + (f" mean={list(norm.mean)}" if norm.mean else "") + (f" std={list(norm.std)}" if norm.std else ""),
            f"output: {self.output}" + (f", thresholds {self.thresholds}" if self.thresholds else ""),
        ]
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


def _versions() -> dict[str, str]:
    import numpy
    import timm

    from .._version import __version__

    return {"napari_cellclass": __version__, "torch": torch.__version__, "timm": timm.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


# --------------------------------------------------------------------------- building
def build_model(
    arch_or_preset: str | list[str],
    classes: list[str] | tuple[str, ...] | None = None,
    in_chans: int | None = None,
    pretrained: bool | None = None,
    weights: str | os.PathLike | None = None,
    *,
    output: str | None = None,
    input_size: tuple[int, int] | None = None,
    preprocess: Preprocess | None = None,
    channel_names: list[str] | None = None,
    head: HeadSpec | None = None,
) -> ModelBundle:
    """A ready-to-use bundle from a preset name, an architecture name, or a list of
    architecture names (a soft-voting ensemble).

    ``pretrained`` defaults to the preset's choice, else False.  ``weights`` is a local
    file (timm state dict or a napari-cellclass model) used instead of a download.
    ``head`` (pooling, dropout, hidden layers) replaces the architecture's or preset's
    head — every member's in an ensemble.
    """
    from .models.weights import load_weights, pretrained_backbone_state
    from .presets import PRESETS

    preset = PRESETS.get(arch_or_preset) if isinstance(arch_or_preset, str) else None
    if preset is not None:
        spec = preset.arch
        classes = list(classes) if classes else list(preset.classes)
        in_chans = in_chans or preset.in_chans
        output = output or preset.output
        pre = preprocess or preset.preprocess
        pretrained = preset.pretrained if pretrained is None else pretrained
        names = channel_names or (list(preset.channel_names) if in_chans == preset.in_chans else None)
    else:
        if isinstance(arch_or_preset, (list, tuple)):
            entries = [arch_entry(n) for n in arch_or_preset]
            spec = ensemble_spec([e.spec for e in entries])
            size = entries[0].input_size
        else:
            entry = arch_entry(arch_or_preset)
            spec, size = entry.spec, entry.input_size
        if not classes:
            raise ArchitectureError("no class names given", "pass classes=[...] (or use a preset, which has its own)")
        classes = list(classes)
        in_chans = in_chans or 3
        output = output or "softmax"
        mean, std = pretrained_mean_std(spec) if in_chans == 3 else (None, None)
        pre = preprocess or Preprocess(input_size=size, normalization=Normalization("meanstd", mean=mean, std=std))
        pretrained = bool(pretrained)
        names = channel_names
    if input_size is not None:
        pre = Preprocess(tuple(input_size), pre.resize, pre.interpolation, pre.normalization)
    pre = Preprocess(pre.input_size, pre.resize, pre.interpolation, pre.normalization.for_channels(in_chans))

    if head is not None:
        spec = _with_head(spec, head)
    spec = spec.canonical()
    check_input_size(spec, pre.input_size)
    network = build_network(spec, in_chans, len(classes), output)
    weight_report: list[Any] = []
    if weights is not None:
        weight_report.append(_load_local(network, weights, in_chans))
    elif pretrained:
        for name, sub in _timm_parts(spec, network):
            state, source = pretrained_backbone_state(name, in_chans)
            if state:
                sub.backbone.load_state_dict(state, strict=True)
                weight_report.append({"backbone": name, "source": source})
            else:  # offline package file
                weight_report.append({"backbone": name, **load_weights(sub, source, in_chans)})
        if not weight_report:
            raise ArchitectureError(
                f"no pretrained weights exist for {spec.describe()} (it is trained from scratch)",
                "build it with pretrained=False",
            )
    network.eval()
    provenance = {
        "created": _now(),
        "preset": preset.name if preset else None,
        "weights": weight_report or "random initialisation",
        "versions": _versions(),
    }
    return ModelBundle(network, classes, output, in_chans, pre, spec, names or [], None, provenance)


def _with_head(spec: ArchSpec, head: HeadSpec) -> ArchSpec:
    if spec.family == "ensemble":
        return ArchSpec(spec.family, spec.name, spec.head, spec.options, tuple(_with_head(m, head) for m in spec.members),
                        spec.vote)
    if spec.family in ("protein_fcn", "hybrid_svm"):
        # an FCN's head is a conv layer that keeps the maps; a hybrid's is an SVM fitted later
        raise ArchitectureError(f"{spec.describe()} has no configurable pooling/dense head",
                                "leave the head options out for this architecture")
    return with_head(spec, head)


def _timm_parts(spec: ArchSpec, network: nn.Module) -> list[tuple[str, nn.Module]]:
    if spec.family == "ensemble":
        return [p for m_spec, m in zip(spec.members, network.members) for p in _timm_parts(m_spec, m)]
    return [(spec.name, network)] if spec.family == "timm" else []


def _load_local(network: nn.Module, weights: str | os.PathLike, in_chans: int) -> dict[str, Any]:
    from .models.weights import load_weights

    path = Path(weights)
    if path.suffix == ".safetensors" and _is_bundle_file(path):
        # multi-stage transfer: start from another napari-cellclass model's network
        return {"from_model": str(path), **load_weights(network, path, in_chans)}
    return load_weights(network, path, in_chans)


def _is_bundle_file(path: Path) -> bool:
    try:
        return META_KEY in (_read_header(path).get("__metadata__") or {})
    except ModelFileError:
        return False


# --------------------------------------------------------------------------- saving
def save_model(bundle: ModelBundle, path: str | os.PathLike) -> Path:
    """Write ``bundle`` atomically: a crash or full disk never leaves a half file."""
    from safetensors.torch import save_model as st_save_model

    target = Path(path)
    if target.suffix != ".safetensors":
        target = target.with_suffix(target.suffix + ".safetensors") if target.suffix else target.with_suffix(".safetensors")
    meta = bundle.metadata()
    meta["provenance"] = {**meta["provenance"], "saved": _now()}
    tmp: str | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        with bundle.lock:
            # contiguous CPU copies: a model living on the GPU saves the same bytes
            st_save_model(bundle.network, tmp, metadata={META_KEY: json.dumps(meta)}, force_contiguous=True)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        publish_mode(tmp, target)
        os.replace(tmp, target)
        fsync_folder(target.parent)
    except OSError as err:
        raise ModelFileError(
            f"cannot write the model to {target} ({err.strerror or err})",
            "choose a writable folder with free space; any previous file there is unchanged",
        ) from err
    finally:
        if tmp is not None and Path(tmp).exists():
            Path(tmp).unlink(missing_ok=True)
    return target


# --------------------------------------------------------------------------- loading
def _read_header(path: Path) -> dict[str, Any]:
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
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ModelFileError(f"{path} has a corrupt header ({err})", "re-save the model") from err
    if not isinstance(header, dict):
        raise ModelFileError(f"{path} has a corrupt header", "re-save the model")
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
    if not p.is_file():
        raise ModelFileError(f"model file {p} does not exist", "check the path")
    header = _read_header(p)
    raw = (header.get("__metadata__") or {}).get(META_KEY)
    if raw is None:
        raise ModelFileError(
            f"{p} is a safetensors file but not a napari-cellclass model (no '{META_KEY}' metadata)",
            "to start from these weights, pass the file as weights=PATH to build_model / --weights to `cellclass train`",
        )
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ModelFileError(f"{p}: the model metadata is not valid JSON ({err})", "re-save the model") from err
    bundle = bundle_from_metadata(meta, str(p))
    try:
        state = load_file(str(p), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelFileError(f"{p}: cannot read the tensors ({err})", "the file is damaged; copy it again") from err
    _load_state(bundle.network, state, p)
    bundle.network.eval()
    if device is not None:
        from .device import resolve_device

        bundle.network.to(resolve_device(device))
    bundle.provenance = {**bundle.provenance, "loaded_from": str(p)}
    return bundle


def bundle_from_metadata(meta: dict[str, Any], where: str = "model file") -> ModelBundle:
    """Rebuild a bundle (random weights) from the JSON a model file carries."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{where}: metadata does not describe a napari-cellclass model", "re-save the model")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
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
        network = build_network(arch, in_chans, len(classes), output)
        return ModelBundle(network, classes, output, in_chans, preprocess, arch, channel_names, thresholds, provenance)
    except ArchitectureError as err:
        raise ModelFileError(f"{where}: the metadata is inconsistent ({err})", "re-save the model") from err


def _load_state(network: nn.Module, state: dict[str, torch.Tensor], where: Path) -> None:
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
