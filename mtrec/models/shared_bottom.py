"""`shared_bottom`: one MLP shared by all tasks, then one tower per task (Caruana 1997)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mtrec.models.layers import BatchedMLP, BatchedTower, TaskGroups, check_common, check_widths, to_batch_major
from pretrain_stack.registry import ENCODERS


@ENCODERS.register("shared_bottom")
class SharedBottom(nn.Module):
    """Shared MLP (`bottom_hidden`) -> representation s; per task a tower (`tower_hidden` -> 1 logit) on s."""

    def __init__(self, input_dim: int, tasks: list[str], bottom_hidden: tuple[int, ...] = (256, 128),
                 tower_hidden: tuple[int, ...] = (64, 32), dropout: float = 0.0, activation: str = "relu",
                 batch_norm: bool = False) -> None:
        super().__init__()
        check_common(tasks, dropout)
        check_widths(bottom_hidden, "model.encoder.bottom_hidden", allow_empty=False)
        check_widths(tower_hidden, "model.encoder.tower_hidden")
        self.tasks = list(tasks)
        n = len(self.tasks)
        self.bottom = BatchedMLP(1, input_dim, bottom_hidden, dropout, activation, batch_norm)
        self.towers = TaskGroups(BatchedTower(n, self.bottom.output_dim, tower_hidden, dropout, activation,
                                              batch_norm), n)
        self.repr_dim = self.bottom.output_dim

    def shared(self, emb: torch.Tensor) -> torch.Tensor:
        """The shared representation s [B, d]."""
        return self.bottom(emb)[0]

    def representations(self, emb: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"emb", "gate_in": the input [B, in], "s": shared representation [B, d], "experts": s as [B, 1, d]}."""
        return self._representations(emb, self.shared(emb))

    @staticmethod
    def _representations(emb: torch.Tensor, s: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"emb": emb, "gate_in": emb, "s": s, "experts": s.unsqueeze(1)}

    def forward(self, emb: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        s = self.shared(emb)
        return {"logits": to_batch_major(self.towers(s)), "representations": self._representations(emb, s)}
