"""Grad-CAM (Selvaraju et al. 2017): channel weights = spatial mean of the gradients."""

from __future__ import annotations

import torch

from .base import CamMethod


class GradCAM(CamMethod):
    name = "gradcam"

    def weights(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return grads.mean(dim=(2, 3))
