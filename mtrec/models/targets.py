"""`mptrec` target: MPT-Rec's pre-training loss on top of `multitask_bce`.

loss = sum_t w_t BCE(fused logit_t) + gen_coe * sum_t w_t BCE(shared-only logit_t)
       + env_coe * NLL(task classifier on the gradient-reversed shared part) + l2 * representation L2.
`l2` penalizes the mean squared norm of s and of the prompted r_t * p_t (activations, which the adversarial
term could otherwise inflate); parameter L2 is the optimizer's `weight_decay`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from pretrain_stack.errors import ConfigError
from pretrain_stack.registry import TARGETS
from pretrain_stack.targets.multitask_bce import MultiTaskBCE


@TARGETS.register("mptrec")
class MPTRecLoss(MultiTaskBCE):
    """Fused BCE + gen_coe * shared-only BCE + env_coe * task-classifier NLL (+ l2); outputs like multitask_bce."""

    def __init__(self, tasks: list[str], label_key: str = "labels", task_weights: list[float] | None = None,
                 gen_coe: float = 0.1, env_coe: float = 0.1, l2: float = 0.0) -> None:
        super().__init__(tasks, label_key=label_key, task_weights=task_weights)
        for key, value in (("gen_coe", gen_coe), ("env_coe", env_coe), ("l2", l2)):
            if value < 0:
                raise ConfigError(f"model.target.{key}: must be >= 0, got {value}", key=f"model.target.{key}")
        self.gen_coe, self.env_coe, self.l2 = float(gen_coe), float(env_coe), float(l2)

    def forward(self, hidden: torch.Tensor | dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        out = super().forward(hidden, batch)
        if "loss" not in out or not isinstance(hidden, dict):
            return out
        labels = batch[self.label_key]
        loss = out["loss"]
        if self.gen_coe > 0 and "shared_logits" in hidden:
            shared = self.task_losses(hidden["shared_logits"], labels)
            out["shared_task_losses"] = shared.detach()
            loss = loss + self.gen_coe * (shared * self.weights[: shared.shape[0]]).sum()
        if self.env_coe > 0 and "task_class_logits" in hidden:
            env = F.cross_entropy(hidden["task_class_logits"], hidden["task_class_labels"])
            out["env_loss"] = env.detach()
            loss = loss + self.env_coe * env
        if self.l2 > 0 and "s" in hidden and "prompted" in hidden:
            reg = hidden["s"].pow(2).sum(-1).mean() + hidden["prompted"].pow(2).sum(-1).mean()
            out["l2_loss"] = reg.detach()
            loss = loss + self.l2 * reg
        out["loss"] = loss
        return out
