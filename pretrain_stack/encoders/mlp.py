"""`mlp`: a feed-forward encoder for flat inputs (e.g. pooled sparse + dense features)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pretrain_stack.errors import ConfigError
from pretrain_stack.registry import ENCODERS

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}


def mlp_layers(input_dim: int, hidden: list[int], dropout: float = 0.0, activation: str = "relu",
               batch_norm: bool = False) -> nn.Sequential:
    """Linear -> [BatchNorm] -> activation -> [Dropout] for each width in `hidden`."""
    if activation not in ACTIVATIONS:
        raise ConfigError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {activation!r}", key="activation")
    layers: list[nn.Module] = []
    prev = input_dim
    for width in hidden:
        layers.append(nn.Linear(prev, width))
        if batch_norm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        prev = width
    return nn.Sequential(*layers)


@ENCODERS.register("mlp")
class MLPEncoder(nn.Module):
    """Stack of fully connected layers; `output_dim` is the last width."""

    def __init__(self, input_dim: int, hidden: list[int], dropout: float = 0.0, activation: str = "relu",
                 batch_norm: bool = False) -> None:
        super().__init__()
        self.net = mlp_layers(input_dim, hidden, dropout, activation, batch_norm)
        self.output_dim = hidden[-1] if hidden else input_dim

    def forward(self, emb: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        return self.net(emb)
