"""The shared machinery of the Grad-CAM family: activation capture and the method base.

One method = one small module that overrides one hook of :class:`CamMethod` (the
shape of pytorch-grad-cam, without its faults: hooks live only inside a ``with``
block, so they are removed on errors and on a closed generator too; the caller's
model is never put into another mode by this code — the engine restores flags).

Gradients are taken with ``torch.autograd.grad`` with respect to the captured
activations only, so no parameter ``.grad`` is written and frozen models (all
``requires_grad=False``) work: the input carries ``requires_grad`` instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import CellclassError


class Capture:
    """Forward hooks that keep the outputs of ``modules`` during one forward pass.

    The hook hands the rest of the network a clone, so an in-place operation after
    the layer (``ReLU(inplace=True)``) cannot change the captured map.
    """

    def __init__(self, modules: Sequence[tuple[str, nn.Module]]) -> None:
        self.modules = list(modules)
        self.acts: list[torch.Tensor | None] = [None] * len(self.modules)
        self.handles: list[Any] = []

    def _hook(self, i: int):
        def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
            if not isinstance(output, torch.Tensor) or output.ndim != 4:
                shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
                raise CellclassError(
                    f"layer {self.modules[i][0]!r} gives {shape}, not a spatial feature map (N, C, H, W)",
                    "choose a convolutional layer (the automatic choice is the last spatial stage)",
                )
            self.acts[i] = output
            return output.clone()

        return hook

    def __enter__(self) -> Capture:
        try:
            for i, (_, m) in enumerate(self.modules):
                self.handles.append(m.register_forward_hook(self._hook(i)))
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def __exit__(self, *exc: Any) -> None:
        self.close()
        self.acts = [None] * len(self.modules)


def class_scores(logits: torch.Tensor, output: str, targets: torch.Tensor) -> torch.Tensor:
    """Sum over the batch of each image's target score; ``targets`` (N,) with -1 = none.

    The score is the pre-activation logit (Grad-CAM's ``y^c``); a binary model's one
    logit counts for class 1 and against class 0.
    """
    valid = (targets >= 0).to(logits.dtype)
    if output == "binary":
        z = logits[:, 0]
        s = torch.where(targets == 1, z, -z)
    else:
        s = logits.gather(1, targets.clamp_min(0)[:, None])[:, 0]
    return (s * valid).sum()


class CamMethod:
    """A gradient-based CAM: ``cam(A, dY/dA)`` → (N, h, w) non-negative maps."""

    name = ""
    needs_grad = True

    def weights(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        """Per-channel weights (N, C) — the one hook most methods override."""
        raise NotImplementedError

    def cam(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        w = self.weights(acts, grads)
        return torch.relu((w[:, :, None, None] * acts).sum(1))
