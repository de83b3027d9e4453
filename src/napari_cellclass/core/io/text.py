"""Strings read from files, made safe to show on a terminal or in a dialog.

A model's metadata or an image's file name can hold terminal escape sequences
(``ESC [ 2 J`` clears the screen, OSC 8 fakes links) or bidi overrides that make a
name read backwards; :func:`printable` removes every control and format character
(Unicode categories Cc and Cf) except the newlines and tabs a multi-line text needs.
"""

from __future__ import annotations

import unicodedata


def printable(text: object, keep: str = "\n\t") -> str:
    """``text`` without control/format characters (``keep`` stays); surrogates from
    undecodable file names become ``\\xNN``."""
    s = str(text)
    if any("\udc80" <= ch <= "\udcff" for ch in s):
        s = s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(ch for ch in s if ch in keep or unicodedata.category(ch) not in ("Cc", "Cf", "Cs"))
