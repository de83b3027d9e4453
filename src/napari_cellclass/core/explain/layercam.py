"""LayerCAM (Jiang et al. 2021): every location weighted by its own positive gradient."""

from __future__ import annotations

import torch

from .base import CamMethod


class LayerCAM(CamMethod):
    name = "layercam"

    def cam(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return torch.relu((torch.relu(grads) * acts).sum(1))
