"""`sparse_features`: pooled embeddings of categorical (possibly multi-valued) features via TorchRec.

One `EmbeddingBagConfig` per table inside a TorchRec `EmbeddingBagCollection`; by default each feature has its
own table, `shared_tables` maps a table name to several features that share it. Input is a
`KeyedJaggedTensor` at `batch[input_key]`; output is the pooled embeddings concatenated in `feature_order`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, PoolingType

from pretrain_stack.errors import ConfigError
from pretrain_stack.registry import EMBEDDINGS

_POOLING = {"sum": PoolingType.SUM, "mean": PoolingType.MEAN}


@EMBEDDINGS.register("sparse_features")
class SparseFeatureEmbedding(nn.Module):
    """TorchRec EBC over `features` ([{"name", "num_embeddings"}, ...]); output [B, len(features) * embedding_dim]."""

    def __init__(self, features: list[dict], embedding_dim: int = 8, pooling: str = "sum", input_key: str = "sparse",
                 shared_tables: dict[str, list[str]] | None = None, init_std: float | None = None,
                 device: str = "cpu") -> None:
        super().__init__()
        if pooling not in _POOLING:
            raise ConfigError(f"pooling: expected one of {sorted(_POOLING)}, got {pooling!r}", key="pooling")
        if not features:
            raise ConfigError("features: the schema has no sparse features", key="features")
        self.input_key = input_key
        self.embedding_dim = embedding_dim
        sizes = {f["name"]: int(f["num_embeddings"]) for f in features}
        shared = shared_tables or {}
        owner: dict[str, str] = {}
        for table, names in shared.items():
            for n in names:
                if n not in sizes:
                    raise ConfigError(f"shared_tables.{table}: unknown feature {n!r}", key=f"shared_tables.{table}")
                owner[n] = table
        tables: dict[str, list[str]] = {}
        for f in features:
            tables.setdefault(owner.get(f["name"], f["name"]), []).append(f["name"])
        configs = []
        for table, names in tables.items():
            rows = max(sizes[n] for n in names)
            std = init_std if init_std is not None else 1.0 / math.sqrt(rows)
            configs.append(EmbeddingBagConfig(
                name=f"t_{table}", embedding_dim=embedding_dim, num_embeddings=rows, feature_names=names,
                pooling=_POOLING[pooling], init_fn=_normal_init(std)))
        self.ebc = EmbeddingBagCollection(tables=configs, device=torch.device(device))
        self.feature_order = [n for c in configs for n in c.feature_names]
        self.output_dim = len(self.feature_order) * embedding_dim

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.ebc(batch[self.input_key]).values()


def _normal_init(std: float):
    def init(weight: torch.Tensor) -> torch.Tensor:
        return nn.init.normal_(weight, mean=0.0, std=std)

    return init
