"""ModelBundle — the one object that crosses every boundary.

A bundle holds the network and everything needed to feed it and read its output:
classes, output mode, thresholds, channels, preprocessing, architecture and
provenance.  ``modelfile`` writes and reads it as safetensors + JSON, ``card``
describes it, and ``presets.factory.build_model`` makes new ones.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import ArchitectureError
from ..io.preprocess import Preprocess
from .heads import OUTPUT_MODES
from .spec import ArchSpec

if TYPE_CHECKING:
    from .ood import OodStats

FORMAT = "napari-cellclass-model"
FORMAT_VERSION = 2  # the newest this code reads; 2 adds OOD statistics tensors
PLAIN_FORMAT_VERSION = 1  # written when a model has no OOD statistics, so older readers still load it


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
    #: OOD statistics (core.models.ood) and the temperature scaling (core.evaluation.calibration)
    ood: OodStats | None = None
    calibration: dict[str, Any] | None = None
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
            "format_version": FORMAT_VERSION if self.ood is not None else PLAIN_FORMAT_VERSION,
            "classes": list(self.classes),
            "output": self.output,
            "multilabel": self.multilabel,
            "thresholds": self.thresholds,
            "in_chans": self.in_chans,
            "channel_names": list(self.channel_names),
            "preprocess": self.preprocess.to_dict(),
            "arch": self.arch.to_dict(),
            "provenance": self.provenance,
            **({"calibration": self.calibration} if self.calibration else {}),
            **({"ood": self.ood.metadata()} if self.ood is not None else {}),
        }

    @property
    def temperature(self) -> float:
        """Divides the logits before the probabilities: 1 unless calibration fitted one."""
        t = (self.calibration or {}).get("temperature", 1.0)
        return float(t) if isinstance(t, (int, float)) and t > 0 else 1.0

    def card(self) -> str:
        """Human-readable summary: what `cellclass info` prints and the viewer's model card shows."""
        from ..io.text import printable
        from .card import model_card

        return printable(model_card(self))  # every string in it came from a file
