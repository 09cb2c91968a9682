"""`cls`: sequence or sample classification with cross-entropy."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pretrain_stack.errors import ConfigError
from pretrain_stack.registry import TARGETS


@TARGETS.register("cls")
class ClassificationTarget(nn.Module):
    """Pools hidden states (first / mean / last / none for flat inputs) and predicts `num_classes` classes."""

    def __init__(self, input_dim: int, num_classes: int = 2, pooling: str = "first", label_key: str = "label") -> None:
        super().__init__()
        if pooling not in ("first", "mean", "last", "none"):
            raise ConfigError(f"pooling: expected first, mean, last or none, got {pooling!r}", key="pooling")
        self.pooling = pooling
        self.label_key = label_key
        self.head = nn.Linear(input_dim, num_classes)

    def forward(self, hidden: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if hidden.dim() == 3:
            hidden = {"first": hidden[:, 0], "last": hidden[:, -1], "mean": hidden.mean(dim=1)}.get(self.pooling, hidden[:, 0])
        logits = self.head(hidden)
        out = {"logits": logits, "probs": logits.softmax(-1)}
        if self.label_key in batch:
            out["loss"] = F.cross_entropy(logits, batch[self.label_key].long())
        return out
