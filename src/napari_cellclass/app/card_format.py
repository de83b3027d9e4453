"""The model card (``ModelBundle.card()``: ``key: value`` lines, some values JSON) as
sections a reader scans: what the model says, what it reads, when to trust it, how it
was trained, and the provenance details — as HTML for the Classify dock.

Every string comes from a model file, so all of it is escaped.
"""

from __future__ import annotations

import html
import json
from typing import Any

#: section title → the card keys it holds, in reading order
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Model", ("classes", "output", "architecture", "bioimage.io package", "explanations", "description", "preset",
               "created")),
    ("Input", ("input", "normalisation", "intensity policy", "intensity statistics from the",
               "its own preprocessing, inside the network")),
    ("Trust", ("ood", "OOD", "no OOD statistics in this model", "calibration", "held-out test")),
    ("Training", ("training", "kept weights", "training recipe", "training data", "training metrics",
                  "training data fingerprint")),
    ("Provenance details", ("weights", "data", "metrics", "versions")),
)
_OTHER = "More"
_MAX_ITEMS = 12  # a JSON list longer than this is shown on one line


def _key_of(line: str) -> tuple[str, str]:
    """(card key, value) of one line; a line without a known ``key:`` goes under "More"."""
    if line.startswith("intensity statistics from the "):
        return "intensity statistics from the", line
    known = {k for _, keys in SECTIONS for k in keys}
    head, sep, rest = line.partition(": ")
    if sep:
        base = head.split(" (", 1)[0]  # "classes (4, single-label)", "held-out test (12 images)"
        if base in known:
            return base, line if base != head or base in _WHOLE_LINE else rest
    return "more", line


def card_sections(card: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """The card's lines grouped: [(section title, [(key, value), ...]), ...], empty ones left out."""
    where = {k: title for title, keys in SECTIONS for k in keys}
    groups: dict[str, list[tuple[str, str]]] = {title: [] for title, _ in SECTIONS}
    groups[_OTHER] = []
    for line in card.splitlines():
        if line.strip():
            key, value = _key_of(line)
            groups[where.get(key, _OTHER)].append((key, value))
    return [(title, rows) for title, rows in groups.items() if rows]


def _json_html(value: Any, depth: int = 0) -> str:
    if isinstance(value, dict) and depth < 3:
        items = "".join(f"<li><b>{html.escape(str(k))}</b>: {_json_html(v, depth + 1)}</li>" for k, v in value.items())
        return f"<ul style='margin:0'>{items}</ul>"
    if isinstance(value, list) and value and len(value) <= _MAX_ITEMS and all(isinstance(v, dict) for v in value) \
            and depth < 3:
        return "".join(_json_html(v, depth + 1) for v in value)
    return html.escape(_inline(value))


def _inline(value: Any) -> str:
    """A value on one line: ``mean 0.9963, n 48``; ``a, b, c``; numbers to 4 digits."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "–"
    if isinstance(value, dict):
        return "; ".join(f"{k} {_inline(v)}" for k, v in value.items())
    if isinstance(value, list):
        inner = ", ".join(_inline(v) for v in value)
        return f"[{inner}]" if any(isinstance(v, list) for v in value) or len(value) > _MAX_ITEMS else inner
    return str(value)


def _salvage(text: str) -> Any:
    """The complete part of a JSON record the card cut at 600 characters: up to the
    last comma outside a string, with the open brackets closed; None if that fails."""
    stack, in_str, esc, cut = [], False, False, None
    for i, ch in enumerate(text):
        if in_str:
            esc, in_str = (not esc and ch == "\\"), in_str and (esc or ch != '"')
            continue
        if ch == '"':
            in_str = True
        elif ch in "[{":
            stack.append("]" if ch == "[" else "}")
        elif ch in "]}" and stack:
            stack.pop()
        elif ch == ",":
            cut = (i, list(stack))
    if cut is None:
        return None
    try:
        return json.loads(text[:cut[0]] + "".join(reversed(cut[1])))
    except ValueError:
        return None


def _value_html(value: str) -> str:
    v = value.strip()
    if v[:1] in "[{":
        try:
            return _json_html(json.loads(v))
        except ValueError:  # the card keeps 600 characters of a long record
            part = _salvage(v)
            return (_json_html(part) if part is not None else html.escape(v)) + " <i>(cut)</i>"
    return html.escape(v)


_WHOLE_LINE = ("more", "OOD", "no OOD statistics in this model", "classes", "held-out test", "bioimage.io package",
               "intensity statistics from the")  # shown as they read


def card_html(card: str) -> str:
    """The card as HTML: a heading per section, one row per line, JSON as nested lists."""
    if not card.strip():
        return ""
    parts = []
    for title, rows in card_sections(card):
        parts.append(f"<h4 style='margin:6px 0 2px 0'>{html.escape(title)}</h4>")
        for key, value in rows:
            lead = "" if key in _WHOLE_LINE else f"<b>{html.escape(key)}</b>: "
            parts.append(f"<div style='margin-left:8px'>{lead}{_value_html(value)}</div>")
    return "".join(parts)
