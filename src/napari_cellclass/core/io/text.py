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


#: first characters that make a spreadsheet read a cell as a formula (OWASP "CSV injection")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(text: str) -> str:
    """A text cell every CSV writer passes names through: a leading ``'`` keeps a
    spreadsheet from running ``=HYPERLINK(…)`` from a class, folder or file name (as
    OWASP recommends; ``csv`` and pandas read the text back with the quote), and
    undecodable bytes of a file name become ``\\xNN`` instead of aborting the write."""
    text = str(text)
    if any("\udc80" <= ch <= "\udcff" for ch in text):  # os.fsdecode's surrogateescape
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def unsafe_cell(text: str) -> str:
    """The name :func:`safe_cell` protected: a CSV this package wrote reads back as written."""
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_STARTS) else text
