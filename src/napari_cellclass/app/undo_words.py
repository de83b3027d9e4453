"""The annotation store's undo steps in a user's words.

The store names its steps for its own log ("paint img-3 frame 0", "relabel rectangle
12 as round"): image keys, item ids, internal kinds.  The Annotate dock says instead
what the user did, with the image's name as its layer shows it: "painting on
'cells.tif'", "giving a rectangle the class 'round'".
"""

from __future__ import annotations

import re
from typing import Any

_KINDS = {"rectangle": "a rectangle", "polygon": "a polygon", "point": "a point", "image": "an image label",
          "pixels": "painted pixels"}


def _image(store: Any, key: str, frame: str | None) -> str:
    try:
        rec = store.image(key)
        name, frames = rec.name or key, store.layout(key).n_frames
    except Exception:  # noqa: BLE001 - an image no longer in the file: its key is all there is
        name, frames = key, 1
    return f"'{name}'" + (f", frame {frame}" if frame is not None and frames > 1 else "")


def _patterns(store: Any) -> list[tuple[str, Any]]:
    img = lambda m: _image(store, m["image"], m.group("frame"))
    return [
        (r"paint (?P<image>.+) frame (?P<frame>\d+)", lambda m: f"painting on {img(m)}"),
        (r"label (?P<image>.+) frame (?P<frame>\d+): none", lambda m: f"removing the label of {img(m)}"),
        (r"label (?P<image>.+) frame (?P<frame>\d+): (?P<cls>.+)", lambda m: f"labelling {img(m)} as {m['cls']}"),
        (r"add (?P<kind>rectangle|polygon|point) \((?P<cls>.+)\)", lambda m: f"drawing {_KINDS[m['kind']]} of class '{m['cls']}'"),
        (r"relabel (?P<kind>\w+) \d+ as (?P<cls>.+)", lambda m: f"giving {_KINDS.get(m['kind'], 'an annotation')} the class '{m['cls']}'"),
        (r"delete (?P<n>\d+) annotation\(s\)", lambda m: f"deleting {m['n']} annotation{'s' if m['n'] != '1' else ''}"),
        (r"add class (?P<cls>.+)", lambda m: f"adding the class '{m['cls']}'"),
        (r"rename class (?P<old>.+) to (?P<new>.+)", lambda m: f"renaming the class '{m['old']}' to '{m['new']}'"),
        (r"colour of (?P<cls>.+)", lambda m: f"the new colour of '{m['cls']}'"),
        (r"move class (?P<cls>.+)", lambda m: f"moving the class '{m['cls']}'"),
        (r"remove class (?P<cls>.+)", lambda m: f"removing the class '{m['cls']}'"),
        (r"multi-label", lambda m: "switching to several classes per image"),
        (r"single-label", lambda m: "switching to one class per image"),
    ]


def in_words(store: Any, what: str | None) -> str | None:
    """``what`` (a store step) as the user would say it; unknown steps unchanged."""
    if not what:
        return what
    for pattern, say in _patterns(store):
        m = re.fullmatch(pattern, what)
        if m is not None:
            return say(m)
    return what
