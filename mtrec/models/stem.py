"""`stem`: STEM-Net (Su et al., AAAI 2024): shared and task-specific embeddings with
All-Forward-Task-specific-Backward gating.

Input: the `task_sparse_features` embedding (T+1 copies: task 0, ..., task T-1, shared) followed by the raw
dense features, i.e. emb = [copy_0 | ... | copy_T | dense], each copy S wide, dense `num_dense` wide (plus
`shared_inputs` values before them that are not per-task, e.g. the `sequence` part's user vector).
Every copy gets the dense features appended: x_k = [copy_k | dense].
- Task t's `num_task_experts` experts read x_t; the `num_shared_experts` shared experts read x_T.
- Task t's gate reads [x_t | x_T] and mixes *all* experts, but the other tasks' experts enter with a stop
  gradient: task t's loss reaches task t's experts and embedding copy and the shared ones, never the
  experts or embedding rows of another task (the paper's gradient isolation), while the forward pass still
  uses everything every task has learned.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mtrec.models.layers import (BatchedGate, BatchedMLP, BatchedTower, TaskGroups, check_at_least, check_common,
                                 check_expert_widths, to_batch_major)
from pretrain_stack.errors import ConfigError
from pretrain_stack.registry import ENCODERS


def own_expert_mask(num_tasks: int, num_task_experts: int, num_shared_experts: int) -> torch.Tensor:
    """[T, E] bool: expert e may receive task t's gradient (t's own experts and the shared ones)."""
    num_experts = num_tasks * num_task_experts + num_shared_experts
    mask = torch.zeros(num_tasks, num_experts, dtype=torch.bool)
    for t in range(num_tasks):
        mask[t, t * num_task_experts:(t + 1) * num_task_experts] = True
    mask[:, num_tasks * num_task_experts:] = True
    return mask


@ENCODERS.register("stem")
class STEM(nn.Module):
    """STEM-Net, one level: per-task and shared experts on per-task and shared embeddings, stop-gradient gates."""

    def __init__(self, input_dim: int, tasks: list[str], num_dense: int = 0, num_task_experts: int = 1,
                 num_shared_experts: int = 1, expert_hidden: tuple[int, ...] = (256, 128),
                 tower_hidden: tuple[int, ...] = (64, 32), gate_hidden: tuple[int, ...] = (), dropout: float = 0.0,
                 activation: str = "relu", batch_norm: bool = False, shared_inputs: int = 0) -> None:
        super().__init__()
        check_common(tasks, dropout)
        check_at_least(num_dense, 0, "model.encoder.num_dense")
        check_at_least(shared_inputs, 0, "model.encoder.shared_inputs")
        num_dense += shared_inputs  # e.g. a `sequence` part's user vector before the dense values: every copy reads it
        check_at_least(num_task_experts, 1, "model.encoder.num_task_experts")
        check_at_least(num_shared_experts, 1, "model.encoder.num_shared_experts")
        check_expert_widths(expert_hidden, tower_hidden, gate_hidden)
        self.tasks = list(tasks)
        n = len(self.tasks)
        sparse = input_dim - num_dense
        if sparse <= 0 or sparse % (n + 1):
            raise ConfigError(
                f"model.embedding: stem needs T+1 = {n + 1} equal embedding copies before {num_dense} dense values "
                f"(use the 'task_sparse_features' embedding part); got an input {input_dim} wide",
                key="model.embedding")
        self.num_tasks, self.num_dense, self.copy_dim = n, num_dense, sparse // (n + 1)
        self.num_task_experts, self.num_shared_experts = num_task_experts, num_shared_experts
        in_dim = self.copy_dim + num_dense
        num_experts = n * num_task_experts + num_shared_experts
        self.experts = BatchedMLP(num_experts, in_dim, expert_hidden, dropout, activation, batch_norm)
        self.gates = TaskGroups(BatchedGate(n, 2 * in_dim, num_experts, gate_hidden, activation), n)
        self.towers = TaskGroups(BatchedTower(n, self.experts.output_dim, tower_hidden, dropout, activation,
                                              batch_norm), n)
        slots = [t for t in range(n) for _ in range(num_task_experts)] + [n] * num_shared_experts
        self.register_buffer("slots", torch.tensor(slots, dtype=torch.long), persistent=False)
        self.register_buffer("own", own_expert_mask(n, num_task_experts, num_shared_experts)[:, :, None, None],
                             persistent=False)
        self.repr_dim = self.experts.output_dim

    def copies(self, emb: torch.Tensor) -> torch.Tensor:
        """The T+1 inputs x_k = [copy_k | dense]: [T+1, B, S + num_dense]."""
        b, n1 = emb.shape[0], self.num_tasks + 1
        sparse = emb[:, : n1 * self.copy_dim].reshape(b, n1, self.copy_dim).transpose(0, 1)
        if self.num_dense == 0:
            return sparse
        dense = emb[:, n1 * self.copy_dim:].unsqueeze(0).expand(n1, -1, -1)
        return torch.cat([sparse, dense], dim=-1)

    def _run(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(inputs [T+1, B, in], experts [E, B, d], per-task mixtures [T, B, d])."""
        x = self.copies(emb)
        experts = self.experts(x.index_select(0, self.slots))
        gate_in = torch.cat([x[: self.num_tasks], x[self.num_tasks:].expand(self.num_tasks, -1, -1)], dim=-1)
        gates = self.gates(gate_in)
        if torch.is_grad_enabled() and experts.requires_grad:
            per_task = torch.where(self.own, experts.unsqueeze(0), experts.detach().unsqueeze(0))
        else:
            per_task = experts.unsqueeze(0).expand(self.num_tasks, -1, -1, -1)
        return x, experts, torch.einsum("tbe,tebd->tbd", gates, per_task)

    def representations(self, emb: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"emb", "gate_in": the shared copy [B, S + dense], "copies" [B, T+1, S + dense], "experts" [B, E, d]
        (task 0's, ..., then the shared ones), "s": mean of the shared experts [B, d], "task_repr" [B, T, d]}."""
        return self._representations(emb, *self._run(emb))

    def _representations(self, emb: torch.Tensor, x: torch.Tensor, experts: torch.Tensor,
                         mixed: torch.Tensor) -> dict[str, torch.Tensor]:
        shared = experts[self.num_tasks * self.num_task_experts:]
        return {"emb": emb, "gate_in": x[self.num_tasks], "copies": to_batch_major(x),
                "experts": to_batch_major(experts), "s": shared.mean(dim=0), "task_repr": to_batch_major(mixed)}

    def forward(self, emb: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        x, experts, mixed = self._run(emb)
        return {"logits": to_batch_major(self.towers(mixed)),
                "representations": self._representations(emb, x, experts, mixed)}
