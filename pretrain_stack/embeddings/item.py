"""`item`: a word/item-id embedding over a token sequence (0 is padding)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pretrain_stack.registry import EMBEDDINGS, TGT_EMBEDDINGS


@EMBEDDINGS.register("item")
class ItemEmbedding(nn.Module):
    """Look up `batch[input_key]` ([B, L] ids) in a `vocab_size x hidden_size` table."""

    def __init__(self, vocab_size: int, hidden_size: int, input_key: str = "src", padding_idx: int = 0,
                 init_std: float = 0.02) -> None:
        super().__init__()
        self.input_key = input_key
        self.output_dim = hidden_size
        self.table = nn.Embedding(vocab_size, hidden_size, padding_idx=padding_idx)
        nn.init.normal_(self.table.weight, std=init_std)
        with torch.no_grad():
            self.table.weight[padding_idx].zero_()

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.table(batch[self.input_key])


@TGT_EMBEDDINGS.register("item")
class TargetItemEmbedding(ItemEmbedding):
    """`item` for the decoder side: reads the decoder input ids (`tgt_in`) by default."""

    def __init__(self, vocab_size: int, hidden_size: int, input_key: str = "tgt_in", padding_idx: int = 0,
                 init_std: float = 0.02) -> None:
        super().__init__(vocab_size, hidden_size, input_key, padding_idx, init_std)
