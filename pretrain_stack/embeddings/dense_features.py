"""`dense_features`: continuous features of an impression, passed through or projected."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pretrain_stack.registry import EMBEDDINGS


@EMBEDDINGS.register("dense_features")
class DenseFeatures(nn.Module):
    """Reads `batch[input_key]` ([B, num_dense]); `out_dim` > 0 adds a linear projection."""

    def __init__(self, num_dense: int, input_key: str = "dense", out_dim: int = 0) -> None:
        super().__init__()
        self.input_key = input_key
        self.proj = nn.Linear(num_dense, out_dim) if out_dim > 0 and num_dense > 0 else None
        self.output_dim = out_dim if self.proj is not None else num_dense

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        x = batch[self.input_key]
        return self.proj(x) if self.proj is not None else x
