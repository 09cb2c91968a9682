"""Shared head of the item-prediction targets: hidden states -> scores over the item vocabulary."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ItemScoringHead(nn.Module):
    """A linear layer to `vocab_size` item scores and a cross-entropy over labelled positions (label 0 = ignore)."""

    def __init__(self, hidden_size: int, vocab_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.proj = nn.Linear(hidden_size, vocab_size)

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores of every item at every position ([..., vocab_size])."""
        return self.proj(hidden)

    def loss(self, hidden: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        keep = labels > 0
        picked = hidden[keep]
        logits = self.scores(picked)
        loss = F.cross_entropy(logits, labels[keep]) if picked.numel() else hidden.sum() * 0.0
        return {"loss": loss, "num_predictions": keep.sum()}
