"""Grad-CAM++ (Chattopadhay et al. 2018): positive gradients weighted by alpha_ij.

With an exponential score the higher derivatives are powers of the first, which
gives the closed form of alpha used here (as in the paper's eq. 19).
"""

from __future__ import annotations

import torch

from .base import CamMethod

_EPS = 1e-7


class GradCAMPlusPlus(CamMethod):
    name = "gradcam++"

    def weights(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        g2, g3 = grads.pow(2), grads.pow(3)
        sum_a = acts.sum(dim=(2, 3), keepdim=True)
        alpha = g2 / (2 * g2 + sum_a * g3 + _EPS)
        alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
        return (alpha * torch.relu(grads)).sum(dim=(2, 3))
