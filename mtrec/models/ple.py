"""`ple`: Progressive Layered Extraction (Tang et al., RecSys 2020): stacked CGC levels of task-specific
and shared experts; each task's gate mixes its own and the shared experts, a shared gate mixes all."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mtrec.models.layers import (BatchedGate, BatchedMLP, BatchedTower, TaskGroups, check_at_least, check_common,
                                 check_expert_widths, mix_experts, to_batch_major)
from pretrain_stack.errors import ConfigError
from pretrain_stack.registry import ENCODERS


class CGCLevel(nn.Module):
    """One Customized Gate Control level; all T * n_task + n_shared experts run as one batched stack.

    Input: the shared [B, in] (first level) or [T + 1, B, in] (task t's path at t, the shared path at T).
    Output: [T + 1, B, d] when a shared gate is kept for a next level, else [T, B, d]; plus the experts [E, B, d].
    """

    def __init__(self, num_tasks: int, input_dim: int, num_task_experts: int, num_shared_experts: int,
                 expert_hidden: tuple[int, ...], gate_hidden: tuple[int, ...], shared_gate: bool, dropout: float,
                 activation: str, batch_norm: bool) -> None:
        super().__init__()
        t, nt, ns = num_tasks, num_task_experts, num_shared_experts
        self.num_tasks, self.num_task_experts, self.num_shared_experts = t, nt, ns
        num_experts = t * nt + ns
        self.experts = BatchedMLP(num_experts, input_dim, expert_hidden, dropout, activation, batch_norm)
        self.task_gates = BatchedGate(t, input_dim, nt + ns, gate_hidden, activation)
        self.shared_gate = BatchedGate(1, input_dim, num_experts, gate_hidden, activation) if shared_gate else None
        slots = [k for k in range(t) for _ in range(nt)] + [t] * ns
        select = [[k * nt + j for j in range(nt)] + [t * nt + j for j in range(ns)] for k in range(t)]
        self.register_buffer("slots", torch.tensor(slots, dtype=torch.long), persistent=False)
        self.register_buffer("select", torch.tensor(select, dtype=torch.long), persistent=False)
        self.output_dim = self.experts.output_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() == 2:
            experts, task_in, shared_in = self.experts(x), x, x
        else:
            experts = self.experts(x.index_select(0, self.slots))
            task_in, shared_in = x[: self.num_tasks], x[self.num_tasks]
        gates = self.task_gates(task_in)
        out = torch.einsum("tbk,tkbd->tbd", gates, experts[self.select])
        if self.shared_gate is not None:
            out = torch.cat([out, mix_experts(self.shared_gate(shared_in), experts)], dim=0)
        return out, experts


@ENCODERS.register("ple")
class PLE(nn.Module):
    """`num_levels` CGC levels (each with `num_task_experts` per task and `num_shared_experts`), then towers."""

    def __init__(self, input_dim: int, tasks: list[str], num_levels: int = 1, num_task_experts: int = 1,
                 num_shared_experts: int = 1, expert_hidden: tuple[int, ...] = (256, 128),
                 tower_hidden: tuple[int, ...] = (64, 32), gate_hidden: tuple[int, ...] = (), dropout: float = 0.0,
                 activation: str = "relu", batch_norm: bool = False) -> None:
        super().__init__()
        check_common(tasks, dropout)
        check_at_least(num_levels, 1, "model.encoder.num_levels")
        check_at_least(num_task_experts, 0, "model.encoder.num_task_experts")
        check_at_least(num_shared_experts, 0, "model.encoder.num_shared_experts")
        if num_task_experts + num_shared_experts < 1:
            raise ConfigError("model.encoder.num_shared_experts: num_task_experts + num_shared_experts must be >= 1",
                              key="model.encoder.num_shared_experts")
        check_expert_widths(expert_hidden, tower_hidden, gate_hidden)
        self.tasks = list(tasks)
        n = len(self.tasks)
        levels = []
        dim = input_dim
        for level in range(num_levels):
            levels.append(CGCLevel(n, dim, num_task_experts, num_shared_experts, expert_hidden, gate_hidden,
                                   level < num_levels - 1, dropout, activation, batch_norm))
            dim = levels[-1].output_dim
        self.levels = nn.ModuleList(levels)
        self.towers = TaskGroups(BatchedTower(n, dim, tower_hidden, dropout, activation, batch_norm), n)
        self.repr_dim = dim

    def _run(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(last level's input, last level's experts [E, B, d], per-task outputs [T, B, d])."""
        x = emb
        for level in self.levels[:-1]:
            x = level(x)[0]
        out, experts = self.levels[-1](x)
        return x, experts, out

    def representations(self, emb: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"emb", "gate_in": the last level's shared-path input [B, in'], "experts": the last level's experts
        [B, E, d] (task 0's, task 1's, ..., then the shared ones), "s": mean of its shared experts [B, d],
        "task_repr": each tower's input [B, T, d]}."""
        return self._representations(emb, *self._run(emb))

    def _representations(self, emb: torch.Tensor, x: torch.Tensor, experts: torch.Tensor,
                         out: torch.Tensor) -> dict[str, torch.Tensor]:
        last = self.levels[-1]
        shared = experts[last.num_tasks * last.num_task_experts:] if last.num_shared_experts else experts
        gate_in = x if x.dim() == 2 else x[last.num_tasks]
        return {"emb": emb, "gate_in": gate_in, "experts": to_batch_major(experts), "s": shared.mean(dim=0),
                "task_repr": to_batch_major(out)}

    def forward(self, emb: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        x, experts, out = self._run(emb)
        return {"logits": to_batch_major(self.towers(out)),
                "representations": self._representations(emb, x, experts, out)}
