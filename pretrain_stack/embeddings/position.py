"""`position`: a learned absolute position embedding for a token sequence."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pretrain_stack.errors import ConfigError
from pretrain_stack.registry import EMBEDDINGS, TGT_EMBEDDINGS


@EMBEDDINGS.register("position")
class PositionEmbedding(nn.Module):
    """Embeds positions 0..L-1 of `batch[input_key]`; sequences longer than `max_len` are an error."""

    def __init__(self, max_len: int, hidden_size: int, input_key: str = "src", init_std: float = 0.02) -> None:
        super().__init__()
        self.input_key = input_key
        self.max_len = max_len
        self.output_dim = hidden_size
        self.table = nn.Embedding(max_len, hidden_size)
        nn.init.normal_(self.table.weight, std=init_std)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        ids = batch[self.input_key]
        length = ids.shape[1]
        if length > self.max_len:
            raise ConfigError(f"sequence length {length} exceeds position.max_len {self.max_len}", key="max_len")
        pos = torch.arange(length, device=ids.device)
        return self.table(pos).unsqueeze(0).expand(ids.shape[0], -1, -1)


@TGT_EMBEDDINGS.register("position")
class TargetPositionEmbedding(PositionEmbedding):
    """`position` for the decoder input (`tgt_in`)."""

    def __init__(self, max_len: int, hidden_size: int, input_key: str = "tgt_in", init_std: float = 0.02) -> None:
        super().__init__(max_len, hidden_size, input_key, init_std)
