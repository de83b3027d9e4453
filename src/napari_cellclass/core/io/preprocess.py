"""Normalisation methods and the full preprocessing recipe a model file carries.

A model must see at inference exactly what it saw in training, so the recipe
(input size, resize policy, interpolation, normalisation and its statistics) is a
plain, JSON-serialisable value stored in every model file.

Order of operations (fixed, so training and inference agree): crop/resize the
visible region → normalise it (per-image statistics are taken on what the network
sees, or supplied from the whole image when tiling) → pad (letterbox) with 0, the
neutral value after normalisation.
"""

from __future__ import annotations

import math

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import ArchitectureError, ModelFileError
from .geometry import INTERPOLATIONS, RESIZE_POLICIES, Geometry, plan, resample

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_EPS = 1e-6

NORMALIZATION_METHODS: dict[str, str] = {
    "meanstd": "scale by the pixel type's range (uint8: /255), then subtract mean and divide by std per channel "
    "(ImageNet defaults for pretrained backbones)",
    "percentile": "per image and channel, clip to the [p_low, p_high] percentiles and scale to [0, 1] "
    "(study 4); optional mean/std afterwards",
    "divide": "divide by a constant (255 in study 3)",
    "meansub": "subtract the per-channel mean of the training set from raw values (study 1); "
    "without stored means, the image's own channel means",
    "image_std": "per image and channel: subtract the mean, divide by the standard deviation (study 2)",
    "dataset": "per channel: subtract the training set's mean and divide by its standard deviation, both measured "
    "in the images' own units when training starts, so every dtype and range (8/12/16-bit, float of any range, "
    "negative values) reaches the network near mean 0, std 1; without stored statistics, the image's own",
    "none": "raw values",
}


@dataclass(frozen=True)
class Normalization:
    method: str = "meanstd"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    divisor: float = 255.0
    p_low: float = 1.0
    p_high: float = 99.8
    #: what the stored statistics were measured on ("dataset": the training split), for the model card
    fitted_on: str | None = None

    def __post_init__(self) -> None:
        if self.method not in NORMALIZATION_METHODS:
            raise ArchitectureError(
                f"unknown normalisation {self.method!r}", f"use one of {', '.join(NORMALIZATION_METHODS)}"
            )
        if not 0 <= self.p_low < self.p_high <= 100:
            raise ArchitectureError(f"percentiles must satisfy 0 <= p_low < p_high <= 100, got {self.p_low}, {self.p_high}")
        if self.divisor == 0 or not math.isfinite(self.divisor):
            raise ArchitectureError("normalisation divisor must be a finite number other than 0")
        # a std of 0 (or NaN anywhere) turns every prediction into NaN, silently
        if self.std is not None and not all(math.isfinite(v) and v > 0 for v in self.std):
            raise ArchitectureError(f"normalisation std must be finite and positive, got {list(self.std)}")
        if self.mean is not None and not all(math.isfinite(v) for v in self.mean):
            raise ArchitectureError(f"normalisation mean must be finite, got {list(self.mean)}")

    def for_channels(self, in_chans: int) -> Normalization:
        """Fill in defaults that depend on the channel count (ImageNet stats for meanstd)."""
        mean, std = self.mean, self.std
        if self.method == "meanstd" and mean is None:
            if in_chans == 3:
                mean, std = IMAGENET_MEAN, IMAGENET_STD
            else:  # non-RGB input: timm averages the first conv, so use the channel-averaged stats
                mean = (sum(IMAGENET_MEAN) / 3,) * in_chans
                std = (sum(IMAGENET_STD) / 3,) * in_chans
        for name, vals in (("mean", mean), ("std", std)):
            if vals is not None and len(vals) not in (1, in_chans):
                raise ArchitectureError(
                    f"normalisation {name} has {len(vals)} values but the model has {in_chans} channels",
                    f"give 1 or {in_chans} values",
                )
        return replace(self, mean=None if mean is None else tuple(float(v) for v in mean),
                       std=None if std is None else tuple(float(v) for v in std))

    # -- per-image statistics (percentile, image_std, meansub without means) --------
    def needs_image_stats(self) -> bool:
        return self.method in ("percentile", "image_std") or (self.method in ("meansub", "dataset") and self.mean is None)

    def image_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Statistics of (N, C, H, W) images, each (N, C, 1, 1); None if not needed."""
        if not self.needs_image_stats():
            return None
        flat = x.flatten(2).float()
        if self.method == "percentile":
            return _percentile(flat, self.p_low), _percentile(flat, self.p_high)
        if self.method in ("image_std", "dataset"):  # dataset without stored statistics: the image's own
            return flat.mean(-1)[..., None, None], flat.std(-1, unbiased=False)[..., None, None]
        mu = flat.mean(-1)[..., None, None]
        return mu, torch.ones_like(mu)

    def apply(
        self,
        x: torch.Tensor,
        value_max: torch.Tensor | None = None,
        stats: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Normalise (N, C, H, W) float images.

        ``value_max`` (N,) holds each image's dtype range (nan for float input);
        ``stats`` overrides per-image statistics, e.g. whole-image stats for tiles.
        """
        m = self.method
        if stats is None and self.needs_image_stats():
            stats = self.image_stats(x)
        if m == "meanstd":
            return _scale_shift(x, value_max, self.mean, self.std)
        if m == "dataset" and self.mean is not None:
            # the training set's statistics in raw units: no dtype scaling, the same constants for every
            # image and tile, so a 12-bit image in a uint16 file and its float copy give the same input
            return _scale_shift(x, None, self.mean, self.std)
        if m == "percentile":
            lo, hi = stats  # type: ignore[misc]
            x = ((x - lo) / (hi - lo).clamp_min(_EPS)).clamp_(0.0, 1.0)
        elif m == "divide":
            x = x / self.divisor
        elif m == "meansub":
            if self.mean is None:
                x = x - stats[0]  # type: ignore[index]
            else:
                return x - _vec(self.mean, x)
        elif m in ("image_std", "dataset"):
            mu, sd = stats  # type: ignore[misc]
            return (x - mu) / sd.clamp_min(_EPS)
        if self.mean is not None and m != "meansub":
            x = x - _vec(self.mean, x)
        if self.std is not None:
            x = x / _vec(self.std, x)
        return x


def _scale_shift(x: torch.Tensor, value_max: torch.Tensor | None,
                 mean: tuple[float, ...] | None, std: tuple[float, ...] | None) -> torch.Tensor:
    """(x / range - mean) / std as one fused x * a + b: three passes over a batch cost
    more than the rest of preprocessing together (measured: ~4 % of a resnet18 forward)."""
    n, c = x.shape[:2]
    a = torch.ones((n, c), dtype=x.dtype, device=x.device)
    b = torch.zeros((1, c), dtype=x.dtype, device=x.device)
    if value_max is not None:
        scale = torch.where(torch.isnan(value_max), torch.ones_like(value_max), value_max)
        a = a / scale.to(x.dtype).view(-1, 1)
    if mean is not None:
        b = b - _vec(mean, x).view(1, -1)
    if std is not None:
        inv = 1.0 / _vec(std, x).view(1, -1)
        a, b = a * inv, b * inv
    return torch.addcmul(b.view(1, c, 1, 1), x, a.view(n, c, 1, 1))


def _vec(vals: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(vals, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)


def _percentile(flat: torch.Tensor, q: float) -> torch.Tensor:
    """Per-row percentile of (N, C, L) by order statistic (no size limit, unlike quantile)."""
    n = int(flat.shape[-1])  # a plain int also under torch.jit.trace (exported packages)
    k = min(n, max(1, int(round(q / 100.0 * (n - 1))) + 1))
    return flat.kthvalue(k, dim=-1).values[..., None, None]


@dataclass(frozen=True)
class Preprocess:
    """Everything between a canonical (C, H, W) image and the network input."""

    input_size: tuple[int, int] = (224, 224)
    resize: str = "squash"
    interpolation: str = "bilinear"
    normalization: Normalization = field(default_factory=Normalization)

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_POLICIES:
            raise ArchitectureError(f"unknown resize policy {self.resize!r}", f"use one of {', '.join(RESIZE_POLICIES)}")
        if self.interpolation not in INTERPOLATIONS:
            raise ArchitectureError(f"unknown interpolation {self.interpolation!r}", f"use one of {', '.join(INTERPOLATIONS)}")
        h, w = self.input_size
        if h < 8 or w < 8:
            raise ArchitectureError(f"input size {self.input_size} is too small", "use at least 8x8")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        if d["normalization"].get("fitted_on") is None:
            del d["normalization"]["fitted_on"]  # files without fitted statistics stay as they were written
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocess:
        try:
            norm = dict(d.get("normalization", {}))
            for key in ("mean", "std"):
                if norm.get(key) is not None:
                    norm[key] = tuple(float(v) for v in norm[key])
            return cls(
                input_size=(int(d["input_size"][0]), int(d["input_size"][1])),
                resize=str(d.get("resize", "squash")),
                interpolation=str(d.get("interpolation", "bilinear")),
                normalization=Normalization(**norm),
            )
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
            raise ModelFileError(f"the preprocessing recipe in the model file is invalid ({err})") from err

    # -------------------------------------------------------------------- the pipeline
    def prepare(
        self,
        image: torch.Tensor,
        value_max: float | None = None,
        stats: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, Geometry]:
        """One canonical (C, H, W) tensor → network input (C, h, w) and its geometry."""
        vm = None if value_max is None else torch.tensor([value_max], dtype=torch.float32, device=image.device)
        x, geom = self.prepare_batch(image[None], vm, stats)
        return x[0], geom

    def prepare_batch(
        self,
        images: torch.Tensor,
        value_max: torch.Tensor | None = None,
        stats: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, Geometry]:
        """Same-sized canonical images (N, C, H, W) → network input (N, C, h, w).

        ``value_max`` holds each image's dtype range (nan or None for float input).
        """
        geom = plan(tuple(images.shape[-2:]), self.input_size, self.resize)
        sy0, sx0, sy1, sx1 = geom.src_box
        dy0, dx0, dy1, dx1 = geom.dst_box
        x = images[:, :, sy0:sy1, sx0:sx1].float()
        x = resample(x, (dy1 - dy0, dx1 - dx0), self.interpolation)
        if value_max is None and self.normalization.method == "meanstd":
            value_max = torch.full((x.shape[0],), float("nan"), device=x.device)
        x = self.normalization.apply(x, value_max, stats)
        out_h, out_w = self.input_size
        if (dy1 - dy0, dx1 - dx0) != (out_h, out_w):
            x = F.pad(x, (dx0, out_w - dx1, dy0, out_h - dy1), value=0.0)
        return x, geom
