"""`mptrec`: the pre-training stage of MPT-Rec (Bai et al., "Efficient Multi-task Prompt Tuning for
Recommendation", TOIS 2025), DESIGN §3.

- A task-shared expert MLP gives s [B, d]; one task-specific expert MLP per task gives r_t [B, d]
  (all T+1 experts read the input embedding and run as one batched stack).
- Task prompts p (an `nn.Embedding` of T x d) prompt each task's representation: r_t * p_t.
- Per task, a 2-way softmax gate on the input mixes them: m_t = g_t0 * (r_t * p_t) + g_t1 * s; tower_t(m_t) -> logit.
- Auxiliary "shared-only" logits: tower_t(s) for every task (the `mptrec` target's gen_coe term).
- Disentangling: a task classifier must tell, from the shared part that enters task t's mix,
  c_t = g_t1 * GRL(s) (the gate weight detached), that it belongs to task t (label t). s itself is the same
  for every task, so on s alone task identity would be unpredictable by construction; the gate-weighted
  copy is what each task actually takes from s. The classifier learns to separate the tasks; through the
  gradient-reversal layer (alpha = 2 / (1 + exp(-grl_gamma * progress)) - 1) s learns to make them
  inseparable, i.e. to carry what the tasks share rather than what tells them apart. Only s is trained
  adversarially: the detached gate is neither helped nor hindered by the classifier.

Per-task gates and towers are `TaskGroups` (an `nn.ModuleList` of groups), so a task added later gets its
own group and leaves the earlier ones untouched; `representations(emb)` gives the frozen tensors a new-task
head reads in one call.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mtrec.models.layers import (BatchedGate, BatchedMLP, BatchedTower, TaskGroups, activation, check_common,
                                 check_expert_widths, check_widths, grad_reverse, grl_alpha, to_batch_major)
from pretrain_stack.errors import ConfigError
from pretrain_stack.registry import ENCODERS


def task_classifier(dim: int, hidden: tuple[int, ...], num_tasks: int, activation_name: str) -> nn.Sequential:
    """MLP from a d-wide representation to one logit per task."""
    layers: list[nn.Module] = []
    prev = dim
    for width in hidden:
        layers += [nn.Linear(prev, width), activation(activation_name, "model.encoder.activation")]
        prev = width
    layers.append(nn.Linear(prev, num_tasks))
    return nn.Sequential(*layers)


@ENCODERS.register("mptrec")
class MPTRec(nn.Module):
    """Shared expert + prompted task experts, 2-way gates, towers; shared-only logits and a GRL task classifier."""

    def __init__(self, input_dim: int, tasks: list[str], expert_hidden: tuple[int, ...] = (256, 128),
                 tower_hidden: tuple[int, ...] = (64, 32), gate_hidden: tuple[int, ...] = (),
                 classifier_hidden: tuple[int, ...] = (64,), dropout: float = 0.0, activation: str = "relu",
                 batch_norm: bool = False, prompt_init_std: float = 1.0, grl_gamma: float = 10.0,
                 label_key: str = "labels") -> None:
        super().__init__()
        check_common(tasks, dropout)
        check_expert_widths(expert_hidden, tower_hidden, gate_hidden)
        check_widths(classifier_hidden, "model.encoder.classifier_hidden")
        if prompt_init_std <= 0:
            raise ConfigError(f"model.encoder.prompt_init_std: must be > 0, got {prompt_init_std}",
                              key="model.encoder.prompt_init_std")
        self.tasks = list(tasks)
        n = len(self.tasks)
        self.num_tasks, self.grl_gamma, self.label_key = n, grl_gamma, label_key
        self.experts = BatchedMLP(n + 1, input_dim, expert_hidden, dropout, activation, batch_norm)
        d = self.experts.output_dim
        self.prompts = nn.Embedding(n, d)
        nn.init.normal_(self.prompts.weight, 0.0, prompt_init_std)
        self.gates = TaskGroups(BatchedGate(n, input_dim, 2, gate_hidden, activation), n)
        self.towers = TaskGroups(BatchedTower(n, d, tower_hidden, dropout, activation, batch_norm), n)
        self.classifier = task_classifier(d, classifier_hidden, n, activation)
        self.repr_dim = d

    def _experts(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(s [B, d], r [T, B, d])."""
        out = self.experts(emb)
        return out[self.num_tasks], out[: self.num_tasks]

    def representations(self, emb: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"emb", "gate_in": the gates' input [B, in], "s": shared [B, d], "r": task-specific [B, T, d],
        "prompts": [T, d]}: everything a new-task head reads from the frozen backbone."""
        return self._representations(emb, *self._experts(emb))

    def _representations(self, emb: torch.Tensor, s: torch.Tensor, r: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"emb": emb, "gate_in": emb, "s": s, "r": to_batch_major(r), "prompts": self.prompts.weight}

    def fuse(self, emb: torch.Tensor, s: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                                 torch.Tensor]:
        """(gates [T, B, 2], prompted r * p [T, B, d], mixes m [T, B, d]) from member-first s and r."""
        prompted = r * self.prompts.weight.unsqueeze(1)
        gates = self.gates(emb)
        mixed = gates[..., :1] * prompted + gates[..., 1:] * s.unsqueeze(0)
        return gates, prompted, mixed

    def forward(self, emb: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        s, r = self._experts(emb)
        gates, prompted, mixed = self.fuse(emb, s, r)
        out = {"logits": to_batch_major(self.towers(mixed)), "gates": to_batch_major(gates), "s": s,
               "prompted": to_batch_major(prompted), "prompts": self.prompts.weight,
               "representations": self._representations(emb, s, r)}
        if self.training or batch.get(self.label_key) is not None:
            out.update(self.auxiliary(s, gates, batch.get("progress", 1.0)))
        return out

    def auxiliary(self, s: torch.Tensor, gates: torch.Tensor,
                  progress: float | torch.Tensor) -> dict[str, torch.Tensor]:
        """Shared-only logits [B, T]; the task classifier's logits [T*B, T] and labels [T*B] (task-major: row
        t*B + i is example i's shared part as task t takes it, labelled t)."""
        b = s.shape[0]
        alpha = grl_alpha(progress, self.grl_gamma)
        shared_part = gates[..., 1:].detach() * grad_reverse(s, alpha).unsqueeze(0)
        class_logits = self.classifier(shared_part.reshape(self.num_tasks * b, -1))
        labels = torch.arange(self.num_tasks, device=s.device).repeat_interleave(b)
        return {"shared_logits": to_batch_major(self.towers(s)), "task_class_logits": class_logits,
                "task_class_labels": labels, "grl_alpha": torch.as_tensor(alpha)}
