"""A new task's tower (MLP -> one logit) and the `tower` head: a new tower on the frozen shared representation."""

from __future__ import annotations

import torch
from torch import nn

from mtrec.models.heads import HEADS, TaskHead


class Tower(nn.Module):
    """Linear -> ReLU per hidden width, then Linear to one logit: [B, d] -> [B]."""

    def __init__(self, input_dim: int, hidden: tuple[int, ...] = (64, 32)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = input_dim
        for width in hidden:
            if width < 1:
                raise ValueError(f"tower_hidden widths must be >= 1, got {list(hidden)}")
            layers += [nn.Linear(prev, width), nn.ReLU()]
            prev = width
        layers.append(nn.Linear(prev, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


@HEADS.register("tower")
class TowerHead(TaskHead):
    """Only a new tower, reading the frozen shared representation s [B, d]."""

    reads = ("s",)

    def __init__(self, repr_dim: int, tower_hidden: tuple[int, ...] = (32,)) -> None:
        super().__init__(repr_dim=repr_dim, tower_hidden=tuple(tower_hidden))
        self.tower = Tower(repr_dim, tuple(tower_hidden))

    def forward(self, reps: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.tower(reps["s"])
