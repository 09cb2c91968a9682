"""`single`: one independent network per task (no sharing); the per-task nets run as one batched stack."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mtrec.models.layers import BatchedMLP, BatchedTower, TaskGroups, check_common, check_widths, to_batch_major
from pretrain_stack.registry import ENCODERS


@ENCODERS.register("single")
class SingleTaskNets(nn.Module):
    """Per task: an MLP (`hidden`) on the input embedding, then a tower (`tower_hidden` -> 1 logit)."""

    def __init__(self, input_dim: int, tasks: list[str], hidden: tuple[int, ...] = (256, 128),
                 tower_hidden: tuple[int, ...] = (64, 32), dropout: float = 0.0, activation: str = "relu",
                 batch_norm: bool = False) -> None:
        super().__init__()
        check_common(tasks, dropout)
        check_widths(hidden, "model.encoder.hidden")
        check_widths(tower_hidden, "model.encoder.tower_hidden")
        self.tasks = list(tasks)
        n = len(self.tasks)
        nets = BatchedMLP(n, input_dim, hidden, dropout, activation, batch_norm)
        self.nets = TaskGroups(nets, n)
        self.towers = TaskGroups(BatchedTower(n, nets.output_dim, tower_hidden, dropout, activation, batch_norm), n)
        self.repr_dim = nets.output_dim

    def representations(self, emb: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"emb", "gate_in": the input [B, in], "task_repr": each task's net output [B, T, d]}."""
        return self._representations(emb, self.nets(emb))

    @staticmethod
    def _representations(emb: torch.Tensor, nets: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"emb": emb, "gate_in": emb, "task_repr": to_batch_major(nets)}

    def forward(self, emb: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        nets = self.nets(emb)
        return {"logits": to_batch_major(self.towers(nets)), "representations": self._representations(emb, nets)}
