"""Several networks voting as one model (study 4).

Soft voting averages the members' probabilities; hard voting counts each member's
predicted class.  Either way the result is returned as *logits* whose probabilities
(under the shared output mode) equal the vote, so prediction, explanation and
model files treat an ensemble like any other network.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ArchitectureError
from .heads import logits_from_probabilities, probabilities
from .spec import ArchSpec, register_family

VOTES = ("soft", "hard")


class Ensemble(nn.Module):
    def __init__(self, members: Sequence[nn.Module], output: str, vote: str = "soft") -> None:
        super().__init__()
        if len(members) < 1:
            raise ArchitectureError("an ensemble needs at least one member")
        if vote not in VOTES:
            raise ArchitectureError(f"unknown vote {vote!r}", f"use one of {', '.join(VOTES)}")
        self.members = nn.ModuleList(members)
        self.output = output
        self.vote = vote

    def member_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """(M, N, K) probabilities of every member."""
        return torch.stack([probabilities(m(x), self.output) for m in self.members])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.member_probabilities(x)
        if self.vote == "hard":
            if self.output == "sigmoid":
                p = (p >= 0.5).float()
            else:
                p = nn.functional.one_hot(p.argmax(-1), p.shape[-1]).float()
        return logits_from_probabilities(p.mean(0), self.output)

    @property
    def num_outputs(self) -> int:
        return self.members[0].num_outputs


@register_family("ensemble")
def _build_ensemble(spec: ArchSpec, in_chans: int, num_outputs: int) -> nn.Module:
    raise ArchitectureError("ensembles are built by build_network, which knows the output mode")
