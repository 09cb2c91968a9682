"""`lm`: next-item prediction (SASRec-style): position t predicts the item at t+1."""

from __future__ import annotations

from typing import Any

import torch

from pretrain_stack.registry import TARGETS
from pretrain_stack.targets.item_scoring import ItemScoringHead


@TARGETS.register("lm")
class NextItemTarget(ItemScoringHead):
    """Labels are `batch[label_key]` when given, else the input `batch[input_key]` shifted left by one."""

    def __init__(self, hidden_size: int, vocab_size: int, label_key: str = "labels", input_key: str = "src") -> None:
        super().__init__(hidden_size, vocab_size)
        self.label_key = label_key
        self.input_key = input_key

    def forward(self, hidden: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        labels = batch.get(self.label_key)
        if labels is None:
            src = batch[self.input_key]
            labels = torch.cat([src[:, 1:], torch.zeros_like(src[:, :1])], dim=1)
        return self.loss(hidden, labels)
