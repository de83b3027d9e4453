"""A one-line stderr progress bar (no dependency): redrawn in place on a terminal,
printed sparingly (every 10 %) when stderr is a file or pipe."""

from __future__ import annotations

import sys
import time


class Bar:
    def __init__(self, enabled: bool = True, width: int = 28, stream=None) -> None:
        self.enabled = enabled
        self.width = width
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._open = False
        self._last_decile = -1
        self._last_draw = 0.0

    def update(self, done: int, total: int, text: str = "") -> None:
        if not self.enabled or total <= 0:
            return
        frac = min(1.0, done / total)
        if self.tty:
            now = time.monotonic()
            if done < total and now - self._last_draw < 0.1:
                return  # redrawing faster than the eye reads costs time for nothing
            self._last_draw = now
            filled = int(self.width * frac)
            line = f"\r[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} {text}"
            print(line[:200].ljust(80), end="", file=self.stream, flush=True)
            self._open = True
        else:
            decile = int(frac * 10)
            if decile != self._last_decile:
                self._last_decile = decile
                print(f"{done}/{total} {text}", file=self.stream, flush=True)

    def status(self, text: str) -> None:
        """A transient line (redrawn in place on a terminal, not printed otherwise)."""
        if self.enabled and self.tty:
            print(f"\r{text}"[:200].ljust(80), end="", file=self.stream, flush=True)
            self._open = True

    def message(self, text: str) -> None:
        """A permanent line (e.g. an epoch summary) above the bar."""
        if not self.enabled:
            return
        self.close()
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._open:
            print(file=self.stream, flush=True)
            self._open = False
