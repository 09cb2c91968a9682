"""`segment`: a segment/type-id embedding (e.g. history vs. candidate)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pretrain_stack.registry import EMBEDDINGS


@EMBEDDINGS.register("segment")
class SegmentEmbedding(nn.Module):
    """Embeds `batch[input_key]` segment ids; when absent, every position is segment 0."""

    def __init__(self, hidden_size: int, num_segments: int = 2, input_key: str = "seg", like_key: str = "src") -> None:
        super().__init__()
        self.input_key = input_key
        self.like_key = like_key
        self.output_dim = hidden_size
        self.table = nn.Embedding(num_segments, hidden_size)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        seg = batch.get(self.input_key)
        if seg is None:
            seg = torch.zeros_like(batch[self.like_key])
        return self.table(seg)
