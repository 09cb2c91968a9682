"""`transformer`: a pre-LayerNorm Transformer encoder over an embedded sequence, bidirectional or causal."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pretrain_stack.registry import ENCODERS


def causal_mask(length: int, device: torch.device) -> torch.Tensor:
    """Boolean [L, L] mask, True where attention is blocked (future positions)."""
    return torch.triu(torch.ones(length, length, dtype=torch.bool, device=device), diagonal=1)


def causal_padding_mask(pad: torch.Tensor, heads: int) -> torch.Tensor:
    """Causal and key-padding blocks merged per sample ([B*heads, L, L]); each query may always see itself.

    With left padding a causal query at a padded position has no visible key, and PyTorch's fused attention
    then returns NaN for the whole sample; letting every query see itself avoids that without changing the
    outputs at real positions.
    """
    length = pad.shape[1]
    blocked = causal_mask(length, pad.device).unsqueeze(0) | pad.unsqueeze(1)
    blocked = blocked & ~torch.eye(length, dtype=torch.bool, device=pad.device)
    return blocked.repeat_interleave(heads, dim=0)


def key_padding(ids: torch.Tensor) -> torch.Tensor:
    """True at padding (id 0); a fully padded row keeps position 0 visible so attention stays finite."""
    pad = (ids == 0).clone()
    pad[pad.all(dim=1), 0] = False
    return pad


@ENCODERS.register("transformer")
class TransformerEncoder(nn.Module):
    """Self-attention layers; padding (id 0 in `batch[input_key]`) is masked, `causal` blocks the future."""

    def __init__(self, hidden_size: int, layers: int = 2, heads: int = 2, ff_size: int = 0, dropout: float = 0.1,
                 causal: bool = False, input_key: str = "src", activation: str = "gelu") -> None:
        super().__init__()
        self.input_key = input_key
        self.causal = causal
        self.heads = heads
        self.output_dim = hidden_size
        layer = nn.TransformerEncoderLayer(hidden_size, heads, ff_size or 4 * hidden_size, dropout,
                                           activation=activation, batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(hidden_size)

    def forward(self, emb: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        ids = batch.get(self.input_key)
        pad = key_padding(ids) if ids is not None else None
        if self.causal and pad is not None:
            out = self.layers(emb, mask=causal_padding_mask(pad, self.heads))
        else:
            mask = causal_mask(emb.shape[1], emb.device) if self.causal else None
            out = self.layers(emb, mask=mask, src_key_padding_mask=pad)
        return self.final_norm(out)
