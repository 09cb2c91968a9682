"""`mmoe`: Multi-gate Mixture-of-Experts (Ma et al., KDD 2018): shared experts, one softmax gate per task."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mtrec.models.layers import (BatchedGate, BatchedMLP, BatchedTower, TaskGroups, check_at_least, check_common,
                                 check_expert_widths, mix_experts, to_batch_major)
from pretrain_stack.registry import ENCODERS


@ENCODERS.register("mmoe")
class MMoE(nn.Module):
    """`num_experts` expert MLPs on the input; per task a softmax gate (on the input) mixes them into its tower."""

    def __init__(self, input_dim: int, tasks: list[str], num_experts: int = 4,
                 expert_hidden: tuple[int, ...] = (256, 128), tower_hidden: tuple[int, ...] = (64, 32),
                 gate_hidden: tuple[int, ...] = (), dropout: float = 0.0, activation: str = "relu",
                 batch_norm: bool = False) -> None:
        super().__init__()
        check_common(tasks, dropout)
        check_at_least(num_experts, 1, "model.encoder.num_experts")
        check_expert_widths(expert_hidden, tower_hidden, gate_hidden)
        self.tasks = list(tasks)
        n = len(self.tasks)
        self.experts = BatchedMLP(num_experts, input_dim, expert_hidden, dropout, activation, batch_norm)
        self.gates = TaskGroups(BatchedGate(n, input_dim, num_experts, gate_hidden, activation), n)
        self.towers = TaskGroups(BatchedTower(n, self.experts.output_dim, tower_hidden, dropout, activation,
                                              batch_norm), n)
        self.repr_dim = self.experts.output_dim

    def _mix(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        experts = self.experts(emb)
        gates = self.gates(emb)
        return experts, gates, mix_experts(gates, experts)

    def representations(self, emb: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"emb", "gate_in" [B, in], "experts" [B, E, d], "s": mean of experts [B, d], "gates" [B, T, E],
        "task_repr": each tower's input [B, T, d]}."""
        return self._representations(emb, *self._mix(emb))

    def _representations(self, emb: torch.Tensor, experts: torch.Tensor, gates: torch.Tensor,
                         mixed: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"emb": emb, "gate_in": emb, "experts": to_batch_major(experts), "s": experts.mean(dim=0),
                "gates": to_batch_major(gates), "task_repr": to_batch_major(mixed)}

    def forward(self, emb: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        experts, gates, mixed = self._mix(emb)
        return {"logits": to_batch_major(self.towers(mixed)),
                "representations": self._representations(emb, experts, gates, mixed)}
