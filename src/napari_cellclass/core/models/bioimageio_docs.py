"""What goes into an exported bioimage.io package besides the network: its sample, cover and documentation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import CellclassError

if TYPE_CHECKING:
    from .bundle import ModelBundle

_SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample_data"


def choose_sample(bundle: ModelBundle) -> tuple[np.ndarray, float | None, str]:
    """A sample image as float32 (C, H, W), its pixel type's range, and where it came from.

    A shipped sample of the model's own channels (and classes) first, then a real
    micrograph bundled with scikit-image of the right channel count.
    """
    from ..io.files import read_image
    from ..io.images import to_canonical, value_max_of

    index = json.loads((_SAMPLE_DIR / "samples.json").read_text()) if (_SAMPLE_DIR / "samples.json").is_file() else {}
    fits = [e for e in index.values() if e.get("channel_names") == list(bundle.channel_names) and "T" not in e.get("axes", "")]
    fits.sort(key=lambda e: -len(set(e.get("classes", [])) & set(bundle.classes)))
    if fits:
        img = read_image(_SAMPLE_DIR / fits[0]["file"])
        data = to_canonical(img.data, img.channel_axis, bundle.in_chans, img.rgb)
        return data, value_max_of(img.data.dtype), f"napari-cellclass sample_data/{fits[0]['file']} ({fits[0].get('note', '')})"
    if bundle.in_chans in (1, 3):
        from skimage import data as skdata

        if bundle.in_chans == 1:
            return skdata.cell()[None].astype(np.float32), 255.0, "scikit-image's real phase-contrast micrograph skimage.data.cell()"
        ihc = np.moveaxis(skdata.immunohistochemistry(), -1, 0).astype(np.float32)
        return ihc, 255.0, "scikit-image's real IHC micrograph skimage.data.immunohistochemistry()"
    raise CellclassError(f"no sample image with {bundle.in_chans} channels ({', '.join(bundle.channel_names)}) is at hand "
                         "for the package's test tensors", "pass one: sample=IMAGE / --sample IMAGE")


def _display_rgb(chw: np.ndarray) -> np.ndarray:
    x = chw[:3].astype(np.float32)
    lo = np.percentile(x, 1, axis=(1, 2), keepdims=True)
    hi = np.percentile(x, 99.8, axis=(1, 2), keepdims=True)
    x = np.clip((x - lo) / np.maximum(hi - lo, 1e-6), 0, 1)
    if x.shape[0] == 1:
        x = np.repeat(x, 3, axis=0)
    elif x.shape[0] == 2:
        x = np.concatenate([x, np.zeros_like(x[:1])])
    return np.moveaxis(x, 0, -1)


def cover_image(chw: np.ndarray, heatmap: np.ndarray | None, size: int = 256) -> np.ndarray:
    """(size, 2*size, 3) uint8: the sample, and the sample under its Grad-CAM map (2:1, as the zoo shows covers)."""
    import torch
    from matplotlib import colormaps

    def fit(img: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(np.moveaxis(img, -1, 0)))[None].float()
        return torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()

    rgb = fit(_display_rgb(chw))
    right = rgb
    if heatmap is not None:
        heat = fit(np.asarray(heatmap, np.float32)[..., None])[..., 0].clip(0, 1)
        right = 0.55 * rgb + 0.45 * colormaps["jet"](heat)[..., :3]
    return (np.concatenate([rgb, right], axis=1) * 255).round().astype(np.uint8)


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def documentation(bundle: ModelBundle, *, sample: str, spec_ops: list[dict[str, Any]], baked: bool,
                  value_range: float, cover_note: str) -> str:
    """The package's README (markdown), from the model card."""
    prov = bundle.provenance
    about = str(prov.get("description") or "")
    pre = bundle.preprocess
    lines = [f"# {', '.join(bundle.classes)} — image classifier (napari-cellclass)", ""]
    if "demonstration" in about.lower():
        lines += ["> **Demonstration only.** " + about, ""]
    elif about:
        lines += [about, ""]
    lines += ["## Classes", "", "| output channel | class |", "| --- | --- |"]
    lines += [f"| {i} | {c} |" for i, c in enumerate(bundle.classes)]
    lines += ["", (f"Output `probabilities`: axes (batch, channel), one {bundle.output} probability per class "
              f"({'multi-label' if bundle.multilabel else 'single-label'}).")]
    if bundle.thresholds:
        lines.append(f"Decision thresholds per class: {bundle.thresholds}.")
    lines += ["", "## Input", "",
              (f"`image`: axes (batch, channel, y, x), {bundle.in_chans} channel(s) [{', '.join(bundle.channel_names)}], "
              f"{pre.input_size[0]}x{pre.input_size[1]} px. Crops of another size are resized to it "
              f"('{pre.resize}', {pre.interpolation}) before the preprocessing below."),
              f"Normalisation of the model: `{pre.normalization.method}`."]
    if pre.normalization.method == "meanstd":
        lines.append(f"Raw input values are expected in [0, {value_range:g}] (8-bit images); rescale other pixel types to that range.")
    lines.append("Spec preprocessing: " + (", ".join(f"`{op['id']}`" for op in spec_ops) or "none") +
                 (". The rest of the normalisation (per-image statistics as napari-cellclass computes them) is part "
                  "of the exported network." if baked else "."))
    lines += ["", "## Training", ""]
    data = (prov.get("training") or {}).get("data") or prov.get("data") or {}
    if isinstance(data, dict) and data.get("fingerprint"):
        lines.append(f"- training data fingerprint: `{data['fingerprint']}`")
    card = bundle.card().splitlines()
    lines += [f"- {ln}" for ln in card if ln.startswith(("training", "architecture", "kept weights", "held-out"))]
    metrics = prov.get("metrics") or {}
    for split in ("test", "val"):
        m = metrics.get(split) if isinstance(metrics, dict) else None
        if isinstance(m, dict):
            keys = [k for k in ("accuracy", "macro_f1", "auc_macro", "n_images") if k in m]
            lines.append(f"- {split} metrics: " + ", ".join(f"{k} {_fmt(m[k])}" for k in keys))
    lines += ["", "## Test tensors and cover", "", f"Test input: a crop of {sample}.", cover_note, "",
              "## Model card", "", "```", *card, "```", "",
              "## Use", "", ("In napari-cellclass: `cellclass predict THIS.zip IMAGES...` or pick the package in the "
              "docks' model menu. Elsewhere: any bioimage.io consumer that runs TorchScript weights "
              "(the pytorch_state_dict weights need napari-cellclass installed)."), ""]
    return "\n".join(lines)
