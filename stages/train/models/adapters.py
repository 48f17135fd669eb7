"""The bottleneck adapter used everywhere in FineCLIPER (AIM / Houlsby style, SPEC §4.1 and §5)."""
from __future__ import annotations

import torch
from torch import nn


class BottleneckAdapter(nn.Module):
    """``x + up(gelu(down(x)))`` (``skip=True``) or ``up(gelu(down(x)))``.

    The up-projection starts at zero, so a fresh adapter is the identity (with skip) or adds nothing
    (without): the adapted network reproduces the frozen one exactly at step 0.
    """

    def __init__(self, dim: int, ratio: float = 0.25, skip: bool = True):
        super().__init__()
        hidden = max(1, int(dim * ratio))
        self.skip = skip
        self.down = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.up = nn.Linear(hidden, dim)
        nn.init.trunc_normal_(self.down.weight, std=0.02)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.up(self.act(self.down(x)))
        return x + out if self.skip else out
