"""`multitask_bce`: one binary cross-entropy per task on per-task logits."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pretrain_stack.registry import TARGETS


@TARGETS.register("multitask_bce")
class MultiTaskBCE(nn.Module):
    """Reads logits [B, T] (a tensor, or a dict with "logits") and labels [B, T]; loss = sum of task BCEs."""

    def __init__(self, tasks: list[str], label_key: str = "labels", task_weights: list[float] | None = None) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.label_key = label_key
        weights = task_weights if task_weights is not None else [1.0] * len(self.tasks)
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32), persistent=False)

    def task_losses(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean BCE of each task ([T])."""
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none").mean(dim=0)

    def forward(self, hidden: torch.Tensor | dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        logits = hidden["logits"] if isinstance(hidden, dict) else hidden
        out: dict[str, torch.Tensor] = {"logits": logits}
        labels = batch.get(self.label_key)
        if labels is not None:
            per_task = self.task_losses(logits, labels)
            out["task_losses"] = per_task.detach()
            out["loss"] = (per_task * self.weights[: per_task.shape[0]]).sum()
        return out
