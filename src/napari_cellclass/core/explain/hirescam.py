"""HiResCAM (Draelos & Carin 2020): gradient times activation, summed over channels.

Unlike Grad-CAM it keeps each location's own gradient, so the map shows exactly the
locations the score depends on (for pool→linear heads it equals CAM).
"""

from __future__ import annotations

import torch

from .base import CamMethod


class HiResCAM(CamMethod):
    name = "hirescam"

    def cam(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return torch.relu((grads * acts).sum(1))
