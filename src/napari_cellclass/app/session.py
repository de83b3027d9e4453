"""The state the docks of one viewer share: which model, which device, what was tuned.

A :class:`Session` is an explicit object handed to every dock (no module-level
singleton holding widgets).  Docks opened from napari's menu find their viewer's
session through :func:`session_for`, which keeps only weak references to viewers.

Threading: :meth:`Session.load` may run in a worker thread (it reads files and
builds networks); everything that changes the session or emits its signals is
called on the Qt main thread.  No Qt import here, so the fine-tune panel, tests and
scripts can use a session without a GUI.
"""

from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psygnal import Signal

from .settings import Settings

if TYPE_CHECKING:
    from napari import Viewer
    from ..core.models.bundle import ModelBundle

DEVICES = ("auto", "cpu", "cuda", "mps")  # mirrors core.device.DEVICES without importing torch


@dataclass(frozen=True)
class ModelChoice:
    """What the user picked: the built-in model, a file, or this session's tuned model."""

    kind: str  # "default" | "file" | "fine-tuned"
    path: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("default", "file", "fine-tuned"):
            raise ValueError(f"unknown model choice {self.kind!r}")
        if self.kind == "file" and not self.path:
            raise ValueError("a model file choice needs a path")

    @property
    def label(self) -> str:
        if self.kind == "default":
            return "built-in default model"
        if self.kind == "fine-tuned":
            return "model fine-tuned in this session"
        return Path(self.path or "").name

    def to_setting(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path}

    @classmethod
    def from_setting(cls, value: Any) -> ModelChoice:
        try:
            choice = cls(str(value["kind"]), value.get("path"))
        except (TypeError, KeyError, ValueError, AttributeError):
            return cls("default")
        # a tuned model lives only as long as its session
        return cls("default") if choice.kind == "fine-tuned" else choice


class Session:
    """Model choice, device, the session's fine-tuned model and a cache of loaded models."""

    choice_changed = Signal(object)  # ModelChoice
    device_changed = Signal(str)
    model_loaded = Signal(object)  # ModelBundle, after a load on the main thread's request
    fine_tuned_changed = Signal(object)  # ModelBundle | None
    models_listed = Signal()  # a model file joined the recent list (e.g. Save… in Fine-tune)

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings if settings is not None else Settings()
        self.choice = ModelChoice.from_setting(self.settings.get("model"))
        device = self.settings.get("device", "auto")
        self.device: str = device if device in DEVICES else "auto"
        self.fine_tuned: ModelBundle | None = None
        self._cache: dict[tuple[Any, ...], ModelBundle] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------ main thread only
    def set_choice(self, choice: ModelChoice) -> None:
        if choice == self.choice:
            return
        self.choice = choice
        if choice.kind == "file" and choice.path:
            self.settings.add_recent_model(choice.path)
        self.settings.set("model", choice.to_setting())
        self.choice_changed.emit(choice)

    def set_device(self, device: str) -> None:
        if device not in DEVICES:
            raise ValueError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}")
        if device != self.device:
            self.device = device
            self.settings.set("device", device)
            self.device_changed.emit(device)

    def set_fine_tuned(self, bundle: ModelBundle | None, select: bool = True) -> None:
        """Hand the session a newly tuned model (the fine-tune panel does this);
        ``select`` makes it the current choice of every dock."""
        self.fine_tuned = bundle
        self.fine_tuned_changed.emit(bundle)
        if bundle is not None and select:
            self.set_choice(ModelChoice("fine-tuned"))
        elif bundle is None and self.choice.kind == "fine-tuned":
            self.set_choice(ModelChoice("default"))

    # ------------------------------------------------------------ any thread
    def _key(self, choice: ModelChoice) -> tuple[Any, ...]:
        if choice.kind == "fine-tuned":
            return ("fine-tuned", id(self.fine_tuned))
        if choice.kind == "default":
            from ..builtin import default_model_path

            path = default_model_path()
        else:
            path = Path(choice.path or "")
        try:
            stat = os.stat(path)
        except OSError:
            return ("file", str(path))  # load_model reports the missing file
        return ("file", str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)

    def load(self, choice: ModelChoice | None = None) -> ModelBundle:
        """The bundle for ``choice`` (default: the current one), loading it once.

        A model file that changed on disk since it was loaded is read again.
        Raises :class:`~napari_cellclass.core.errors.CellclassError` subclasses with
        a readable message for missing or damaged files.
        """
        choice = choice or self.choice
        if choice.kind == "fine-tuned":
            if self.fine_tuned is None:
                from ..core.errors import ModelFileError

                raise ModelFileError(
                    "no model has been fine-tuned in this session yet",
                    "fine-tune one in the fine-tune panel, or choose the built-in model or a model file",
                )
            return self.fine_tuned
        key = self._key(choice)
        with self._lock:
            bundle = self._cache.get(key)
            if bundle is None:
                from ..core.models.modelfile import load_model

                bundle = load_model(key[1])
                self._cache = {k: v for k, v in self._cache.items() if k[:2] != key[:2]}
                self._cache[key] = bundle
            return bundle

    def cached(self, choice: ModelChoice | None = None) -> ModelBundle | None:
        """The bundle if it is already loaded (never loads; safe on the main thread)."""
        choice = choice or self.choice
        if choice.kind == "fine-tuned":
            return self.fine_tuned
        try:
            key = self._key(choice)
        except Exception:  # noqa: BLE001 - e.g. the built-in model is missing: nothing cached
            return None
        return self._cache.get(key)


# One session per viewer, found again by every dock of that viewer.  Viewers are held
# weakly so closing one frees it (napari's tests check that viewers do not leak).
_SESSIONS: dict[int, tuple[weakref.ref, Session]] = {}


def session_for(viewer: Viewer, session: Session | None = None) -> Session:
    """The session of ``viewer``: created on first use, or ``session`` when given (it
    then becomes the viewer's session, e.g. the demo's, with throw-away settings)."""
    # napari hands plugins a new proxy of the viewer each time: key on the viewer itself
    viewer = getattr(viewer, "__wrapped__", viewer)
    for key in [k for k, (ref, _) in _SESSIONS.items() if ref() is None]:
        del _SESSIONS[key]
    entry = _SESSIONS.get(id(viewer))
    if session is None and entry is not None and entry[0]() is viewer:
        return entry[1]
    session = session if session is not None else Session()
    _SESSIONS[id(viewer)] = (weakref.ref(viewer), session)
    return session
