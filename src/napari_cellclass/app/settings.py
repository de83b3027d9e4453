"""Dock settings that survive a restart: one small JSON file in the user config dir.

Plain JSON rather than QSettings so the file is readable, testable without Qt and
movable: ``NAPARI_CELLCLASS_CONFIG_DIR`` points it elsewhere (tests use a tmp dir).
A damaged file is never fatal: the docks start from their defaults and the next
save replaces it.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

ENV_DIR = "NAPARI_CELLCLASS_CONFIG_DIR"
FILENAME = "settings.json"
MAX_RECENT = 8


def config_dir() -> Path:
    """Where napari-cellclass keeps its settings (env override, else platformdirs)."""
    override = os.environ.get(ENV_DIR)
    if override:
        return Path(override)
    from platformdirs import user_config_dir

    return Path(user_config_dir("napari-cellclass", appauthor=False))


class Settings:
    """A flat ``key -> JSON value`` store written atomically on every change."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else config_dir() / FILENAME
        self._lock = threading.Lock()
        self._values: dict[str, Any] = self._read()

    def _read(self) -> dict[str, Any]:
        try:
            values = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return values if isinstance(values, dict) else {}

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        with self._lock:
            if self._values.get(key) == value:
                return
            self._values[key] = value
            self._write()

    def update(self, values: dict[str, Any]) -> None:
        with self._lock:
            self._values.update(values)
            self._write()

    def _write(self) -> None:
        from ..core.atomicfile import write_atomic

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, json.dumps(self._values, indent=1, sort_keys=True).encode("utf-8"), durable=False)
        except OSError:
            pass  # a read-only home must not break the docks: settings just do not persist

    # recent model files, newest first, shared by every dock
    def recent_models(self) -> list[str]:
        return [p for p in self.get("recent_models", []) if isinstance(p, str)]

    def add_recent_model(self, path: str | os.PathLike) -> list[str]:
        p = str(Path(path).resolve())
        recent = [p, *[q for q in self.recent_models() if q != p]][:MAX_RECENT]
        self.set("recent_models", recent)
        return recent
