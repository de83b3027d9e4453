"""Raw maps of one (non-ensemble) network on a batch of prepared inputs.

One forward pass for the whole batch, then one backward pass per *round*: round
``r`` explains the ``r``-th target of every image at once (``-1`` where an image has
fewer targets), so "all classes" costs K backward passes, not K x N.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..errors import CellclassError
from . import cam as _cam
from . import fcn as _fcn
from .base import CamMethod, Capture, class_scores
from .gradcam import GradCAM
from .gradcampp import GradCAMPlusPlus
from .hirescam import HiResCAM
from .layercam import LayerCAM
from .target_layers import default_layer, resolve

GRADIENT_METHODS: dict[str, type[CamMethod]] = {
    m.name: m for m in (GradCAM, GradCAMPlusPlus, LayerCAM, HiResCAM)
}

#: logits (N, n_out) → rounds of targets (R, N), -1 = no target for that image
ChooseTargets = Callable[[torch.Tensor], torch.Tensor]
View = tuple[str, torch.Tensor]  # layer name, maps (R, N, h, w)


def _pick(maps: torch.Tensor, rounds: torch.Tensor) -> torch.Tensor:
    """(N, K, h, w) class maps → (R, N, h, w) maps of each round's targets (0 where none)."""
    out = []
    for r in range(rounds.shape[0]):
        t = rounds[r]
        m = maps[torch.arange(maps.shape[0], device=maps.device), t.clamp_min(0)]
        out.append(m * (t >= 0).to(m.dtype)[:, None, None])
    return torch.stack(out)


def network_maps(
    network: nn.Module, output: str, x: torch.Tensor, choose: ChooseTargets, method: str,
    layers: Sequence[str | None] = (None,),
) -> tuple[torch.Tensor, torch.Tensor, list[View]]:
    """(logits, rounds, views) for ``method`` on ``x`` (N, C, h, w).

    The caller holds the model's lock and has put it in eval mode.
    """
    if method == "fcn":
        _fcn.check_fcn(network)
        with torch.no_grad():
            logits, p = _fcn.probability_maps(network, output, x)
        rounds = choose(logits)
        return logits, rounds, [("classifier", _pick(p, rounds))]
    if method == "cam":
        auto = default_layer(network)
        if any(l not in (None, "", auto) for l in layers):
            raise CellclassError(f"CAM always uses the classifier's input features ({auto!r})",
                                 "leave the layer on 'auto', or use Grad-CAM to explain another layer")
        _cam.check_cam_head(network)
        name, module = resolve(network, auto)
        with torch.no_grad(), Capture([(name, module)]) as cap:
            logits = network(x)
            feats = cap.acts[0]
            _cam.check_linear_pool(network, feats)
            maps = torch.relu(_cam.class_maps(network, output, feats))
        rounds = choose(logits)
        return logits, rounds, [(name, _pick(maps, rounds))]
    if method not in GRADIENT_METHODS:
        raise CellclassError(f"unknown explanation method {method!r}")
    impl = GRADIENT_METHODS[method]()
    names = [n for n, _ in (resolve(network, l) for l in layers)]
    logits, rounds, per_layer = _gradient_rounds(network, output, x, choose, layers, impl.cam)
    return logits, rounds, list(zip(names, per_layer))


#: methods whose map is relu(sum_c w_c A_c) with one weight per channel: a tiled map can use
#: the whole image's weights for every tile, so tiles share one scale and leave no seams
CHANNEL_WEIGHT_METHODS = ("gradcam", "gradcam++")


def channel_weights(
    network: nn.Module, output: str, x: torch.Tensor, choose: ChooseTargets, method: str,
    layers: Sequence[str | None] = (None,),
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """(logits, rounds, per layer the channel weights (R, N, C)) of ``method`` on ``x``."""
    if method not in CHANNEL_WEIGHT_METHODS:
        raise CellclassError(f"{method!r} has no per-channel weights", f"use one of {', '.join(CHANNEL_WEIGHT_METHODS)}")
    impl = GRADIENT_METHODS[method]()
    return _gradient_rounds(network, output, x, choose, layers, impl.weights)


def weighted_maps(network: nn.Module, x: torch.Tensor, weights: Sequence[torch.Tensor],
                  layers: Sequence[str | None] = (None,)) -> list[View]:
    """relu(sum_c w_c A_c) for every image of ``x`` with fixed weights (R, C) per layer: one
    forward pass, no gradients (the weights came from :func:`channel_weights`)."""
    targets = [resolve(network, l) for l in layers]
    with torch.no_grad(), Capture(targets) as cap:
        network(x)
        return [(n, torch.relu(torch.einsum("rc,nchw->rnhw", w.to(a.device, torch.float32), a.float())))
                for (n, _), a, w in zip(targets, cap.acts, weights)]


def _gradient_rounds(network: nn.Module, output: str, x: torch.Tensor, choose: ChooseTargets,
                     layers: Sequence[str | None], per_round: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                     ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """One forward pass, one backward pass per round; ``per_round(A, dY/dA)`` per layer, stacked (R, N, ...)."""
    targets = [resolve(network, l) for l in layers]
    # a caller inside torch.inference_mode / no_grad still gets gradients here
    with torch.inference_mode(False), torch.enable_grad(), Capture(targets) as cap:
        x = x.detach().clone().requires_grad_(True)  # the graph exists even if every weight is frozen
        logits = network(x)
        acts = [a for a in cap.acts if a is not None]
        if len(acts) != len(targets):
            missing = [n for (n, _), a in zip(targets, cap.acts) if a is None]
            raise CellclassError(f"layer(s) {missing} are not used in the forward pass", "choose another layer")
        rounds = choose(logits.detach())
        per_layer: list[list[torch.Tensor]] = [[] for _ in targets]
        for r in range(rounds.shape[0]):
            score = class_scores(logits, output, rounds[r])
            grads = torch.autograd.grad(score, acts, retain_graph=r < rounds.shape[0] - 1, allow_unused=True)
            valid = (rounds[r] >= 0).to(logits.dtype)
            for j, (a, g) in enumerate(zip(acts, grads)):
                if g is None:
                    g = torch.zeros_like(a)
                out = per_round(a.detach().float(), g.float())
                per_layer[j].append(out * valid.view(-1, *([1] * (out.ndim - 1))))
        del acts
    return logits.detach(), rounds, [torch.stack(m) for m in per_layer]
