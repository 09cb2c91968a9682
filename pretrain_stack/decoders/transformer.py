"""`transformer` decoder: causal self-attention over the target sequence plus cross-attention to the encoder."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pretrain_stack.encoders.transformer import causal_padding_mask, key_padding
from pretrain_stack.registry import DECODERS


@DECODERS.register("transformer")
class TransformerDecoder(nn.Module):
    """Pre-LN decoder layers; padding in `batch[input_key]` (target) and `batch[memory_key]` (source) is masked."""

    def __init__(self, hidden_size: int, layers: int = 2, heads: int = 2, ff_size: int = 0, dropout: float = 0.1,
                 input_key: str = "tgt_in", memory_key: str = "src", activation: str = "gelu") -> None:
        super().__init__()
        self.input_key = input_key
        self.memory_key = memory_key
        self.heads = heads
        self.output_dim = hidden_size
        layer = nn.TransformerDecoderLayer(hidden_size, heads, ff_size or 4 * hidden_size, dropout,
                                           activation=activation, batch_first=True, norm_first=True)
        self.layers = nn.TransformerDecoder(layer, layers)
        self.final_norm = nn.LayerNorm(hidden_size)

    def forward(self, tgt_emb: torch.Tensor, memory: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        tgt_mask = causal_padding_mask(key_padding(batch[self.input_key]), self.heads)
        mem_pad = key_padding(batch[self.memory_key])
        out = self.layers(tgt_emb, memory, tgt_mask=tgt_mask, memory_key_padding_mask=mem_pad)
        return self.final_norm(out)
