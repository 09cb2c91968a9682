"""The `prompt` method's heads: MPT-Rec's new-task stage (DESIGN §3) and its analogues on the other backbones.

MPT-Rec (mptrec backbone), with everything of the pre-trained model frozen:
  q = LayerNorm(W2 relu(W1 x))                      input projection in -> d/2 -> d
  a = softmax(q P^T / temperature)                  attention over the frozen old task prompts P [T, d]
                                                    (temperature d/4 by default: q and the prompts both have
                                                    norm ~sqrt(d), so q.p spans about +-d; sqrt(d) was too sharp)
  r = sum_t a_t r_t                                 the weights mix the frozen task-specific representations
  g = softmax(W_g x)                                a new 2-way gate on the input
  m = g_0 (r * p_new) + g_1 s                       the mix, prompted by the new prompt p_new [1, d], vs frozen s
                                                    (p_new starts at |N(0, 1)|: the r_t are ReLU outputs, and a
                                                    positive prompt keeps their signs; random signs converged
                                                    slower and less evenly across seeds)
  logit = tower(m)                                  a new tower
mmoe / ple / stem / single: a new softmax gate (on the gates' input) over the frozen experts (single: the
frozen per-task networks) and a new tower. shared_bottom: a new tower on the frozen shared representation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mtrec.models.heads import HEADS, TaskHead
from mtrec.models.tower import Tower, TowerHead


@HEADS.register("mptrec_prompt")
class MPTRecPromptHead(TaskHead):
    """New prompt, input projection attending over the old prompts, new 2-way gate and new tower (MPT-Rec)."""

    reads = ("gate_in", "s", "r")
    constants = ("prompts",)

    def __init__(self, input_dim: int, repr_dim: int, tower_hidden: tuple[int, ...] = (32,),
                 proj_hidden: int | None = None, temperature: float | None = None,
                 prompt_init_std: float = 1.0) -> None:
        proj_hidden = proj_hidden or max(1, repr_dim // 2)
        temperature = float(temperature) if temperature is not None else repr_dim / 4
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        super().__init__(input_dim=input_dim, repr_dim=repr_dim, tower_hidden=tuple(tower_hidden),
                         proj_hidden=proj_hidden, temperature=temperature, prompt_init_std=prompt_init_std)
        self.temperature = temperature
        self.prompt = nn.Parameter(torch.empty(1, repr_dim).normal_(0.0, prompt_init_std).abs_())
        self.query = nn.Sequential(nn.Linear(input_dim, proj_hidden), nn.ReLU(), nn.Linear(proj_hidden, repr_dim),
                                   nn.LayerNorm(repr_dim))
        self.gate = nn.Linear(input_dim, 2)
        self.tower = Tower(repr_dim, tuple(tower_hidden))

    def attention(self, reps: dict[str, torch.Tensor]) -> torch.Tensor:
        """Weights [B, T] of each old task's representation for the new task."""
        scores = self.query(reps["gate_in"]) @ reps["prompts"].t()
        return torch.softmax(scores / self.temperature, dim=-1)

    def forward(self, reps: dict[str, torch.Tensor]) -> torch.Tensor:
        mixed = (self.attention(reps).unsqueeze(-1) * reps["r"]).sum(dim=1)
        gate = torch.softmax(self.gate(reps["gate_in"]), dim=-1)
        return self.tower(gate[:, :1] * (mixed * self.prompt) + gate[:, 1:] * reps["s"])


@HEADS.register("expert_gate")
class ExpertGateHead(TaskHead):
    """A new softmax gate over the frozen experts [B, E, d] (read from `experts_key`) and a new tower."""

    constants = ()

    def __init__(self, input_dim: int, num_experts: int, repr_dim: int, tower_hidden: tuple[int, ...] = (64, 32),
                 experts_key: str = "experts") -> None:
        super().__init__(input_dim=input_dim, num_experts=num_experts, repr_dim=repr_dim,
                         tower_hidden=tuple(tower_hidden), experts_key=experts_key)
        self.experts_key = experts_key
        self.reads = ("gate_in", experts_key)
        self.gate = nn.Linear(input_dim, num_experts)
        self.tower = Tower(repr_dim, tuple(tower_hidden))

    def forward(self, reps: dict[str, torch.Tensor]) -> torch.Tensor:
        gate = torch.softmax(self.gate(reps["gate_in"]), dim=-1)
        return self.tower((gate.unsqueeze(-1) * reps[self.experts_key]).sum(dim=1))


EXPERTS_KEY = {"mmoe": "experts", "ple": "experts", "stem": "experts", "single": "task_repr"}


def prompt_head(backbone: str, shapes: dict[str, tuple[int, ...]], **options: Any) -> TaskHead:
    """The `prompt` method's head for a backbone, sized from the shapes of its representations."""
    if backbone == "mptrec":
        return MPTRecPromptHead(shapes["gate_in"][-1], shapes["s"][-1], **options)
    if backbone == "shared_bottom":
        return TowerHead(shapes["s"][-1], **options)
    if backbone in EXPERTS_KEY:
        key = EXPERTS_KEY[backbone]
        return ExpertGateHead(shapes["gate_in"][-1], shapes[key][1], shapes[key][2], experts_key=key, **options)
    raise ValueError(f"method 'prompt' has no head for backbone {backbone!r} "
                     f"(known: mptrec, shared_bottom, {', '.join(EXPERTS_KEY)})")


def tower_head(backbone: str, shapes: dict[str, tuple[int, ...]], **options: Any) -> TaskHead:
    """The `tower` method's head: a new tower on the frozen shared representation s."""
    if "s" not in shapes:
        raise ValueError(f"method 'tower' needs a shared representation, which backbone {backbone!r} does not have")
    return TowerHead(shapes["s"][-1], **options)
