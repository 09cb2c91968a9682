"""`mlm`: masked-item prediction (BERT4Rec-style): predict the items hidden behind the mask token."""

from __future__ import annotations

from typing import Any

import torch

from pretrain_stack.registry import TARGETS
from pretrain_stack.targets.item_scoring import ItemScoringHead


@TARGETS.register("mlm")
class MaskedItemTarget(ItemScoringHead):
    """Loss over positions where `batch[label_key]` > 0 (the masked positions); the data step does the masking."""

    def __init__(self, hidden_size: int, vocab_size: int, label_key: str = "labels") -> None:
        super().__init__(hidden_size, vocab_size)
        self.label_key = label_key

    def forward(self, hidden: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.loss(hidden, batch[self.label_key])
