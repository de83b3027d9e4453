"""npe2 sample data: one synthetic image per modality of the five studies, a short
phase-contrast stack, and scikit-image's real phase-contrast ``cell`` image.

The synthetic files live in ``sample_data/`` inside the package and are regenerated
by ``scripts/make_sample_data.py`` (fixed seed).  No torch import here.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

SAMPLE_DIR = Path(__file__).with_name("sample_data")

LayerDataTuple = tuple[Any, dict[str, Any], str]


@lru_cache(maxsize=1)
def _index() -> dict[str, dict[str, Any]]:
    path = SAMPLE_DIR / "samples.json"
    if not path.is_file():
        from .core.errors import DataError

        raise DataError(f"the sample data index {path} is missing", "reinstall napari-cellclass or run scripts/make_sample_data.py")
    return json.loads(path.read_text())


def _sample(stem: str, title: str, as_channels: bool = True) -> list[LayerDataTuple]:
    from .core.io.files import read_image

    entry = _index()[stem]
    img = read_image(SAMPLE_DIR / entry["file"])
    meta = {k: entry[k] for k in ("task", "modality", "study", "axes", "channel_names", "true_classes", "seed", "note")}
    kwargs: dict[str, Any] = {"name": title, "metadata": {"cellclass_sample": meta}}
    if img.rgb:
        kwargs["rgb"] = True
    elif as_channels and "C" in entry["axes"]:
        kwargs = _as_channels(title, meta, entry["axes"].index("C"))
    return [(img.data, kwargs, "image")]


#: one colour per channel, as fluorescence viewers show them (additive on black)
CHANNEL_COLOURS = {"protein": "green", "nucleus": "blue", "microtubules": "red", "ER": "yellow",
                   "SRS-lipids": "magenta", "TPEF": "green", "transmission": "gray"}


def _as_channels(title: str, meta: dict[str, Any], axis: int) -> dict[str, Any]:
    """napari's ``channel_axis`` loading: one coloured layer per channel, named after it.
    Each layer's metadata names its group (the sample's title) and its place in it, so the
    docks can combine the layers back into one multichannel input."""
    names = list(meta["channel_names"])
    return {
        "name": names,
        "channel_axis": axis,
        "colormap": [CHANNEL_COLOURS.get(n, "gray") for n in names],
        "blending": ["translucent_no_depth"] + ["additive"] * (len(names) - 1),
        "metadata": [{"cellclass_sample": {**meta, "group": title, "channel": n, "channel_index": i}}
                     for i, n in enumerate(names)],
    }


def phase_contrast_cell() -> list[LayerDataTuple]:
    """The real phase-contrast micrograph bundled with scikit-image (``skimage.data.cell``)."""
    from skimage.data import cell

    return [(cell(), {"name": "cell"}, "image")]


def cell_line() -> list[LayerDataTuple]:
    """Study 1: a synthetic phase-contrast cell culture (RGB); the default model's kind of image."""
    return _sample("cell_line", "cell-line (synthetic)")


def cell_line_stack() -> list[LayerDataTuple]:
    """Study 1: four synthetic phase-contrast images as a stack, one per parental cell line."""
    return _sample("cell_line_stack", "cell-line stack (synthetic)")


def brightfield() -> list[LayerDataTuple]:
    """Study 2: a synthetic greyscale brightfield tile."""
    return _sample("brightfield", "brightfield (synthetic)")


def actin() -> list[LayerDataTuple]:
    """Study 3: a synthetic actin-stained confocal image (RGB, signal in green)."""
    return _sample("actin", "actin (synthetic)")


def senescence() -> list[LayerDataTuple]:
    """Study 4: a synthetic 3-channel non-linear optical image (SRS lipids, TPEF, transmission)."""
    return _sample("senescence", "senescence NLO (synthetic)")


def protein() -> list[LayerDataTuple]:
    """Study 5: a synthetic 4-channel immunofluorescence image (protein, nucleus, microtubules, ER)."""
    return _sample("protein", "protein localisation (synthetic)")


def nuclei_labels(nucleus) -> Any:
    """Objects for the samples: the nucleus channel thresholded (Otsu), small specks dropped, labelled."""
    import numpy as np
    from skimage.filters import threshold_otsu
    from skimage.measure import label

    mask = nucleus > threshold_otsu(nucleus)
    lab = label(mask)
    sizes = np.bincount(lab.ravel())
    lab[sizes[lab] < 20] = 0  # a few pixels over the threshold are noise, not a nucleus
    return label(lab > 0).astype(np.uint16)


def protein_objects() -> list[LayerDataTuple]:
    """Study 5's 4-channel image with a Labels layer of its nuclei (the nucleus channel thresholded):
    the input of object mode (the Classify dock's *objects* row, ``cellclass predict --objects``)."""
    # one (C, H, W) layer, not coloured channel layers: object mode reads one image layer,
    # and its channel axis comes from the metadata ("axes": "CYX"), so "auto" is not ambiguous
    (data, kwargs, kind), = _sample("protein", "protein localisation (synthetic)", as_channels=False)
    return [(data, kwargs, kind), (nuclei_labels(data[1]), {"name": "nuclei (threshold)"}, "labels")]
