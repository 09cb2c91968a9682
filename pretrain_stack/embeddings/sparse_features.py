"""`sparse_features`: pooled embeddings of categorical (possibly multi-valued) features via TorchRec.

One `EmbeddingBagConfig` per table inside a TorchRec `EmbeddingBagCollection`; by default each feature has its
own table, `shared_tables` maps a table name to several features that share it. Every table has
`embedding_dim` columns unless `embedding_dims` gives it its own (keyed by table name: the feature's name, or the
`shared_tables` name). Input is a `KeyedJaggedTensor` at `batch[input_key]`; output is the pooled embeddings
concatenated in `feature_order`, `feature_dims[i]` columns for feature i.
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
    """TorchRec EBC over `features` ([{"name", "num_embeddings"}, ...]); output [B, sum(feature_dims)]."""

    def __init__(self, features: list[dict], embedding_dim: int = 8, pooling: str = "sum", input_key: str = "sparse",
                 shared_tables: dict[str, list[str]] | None = None, init_std: float | None = None,
                 device: str = "cpu", embedding_dims: dict[str, int] | None = None) -> None:
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
        dims = table_dims(list(tables), embedding_dim, embedding_dims)
        configs = []
        for table, names in tables.items():
            rows = max(sizes[n] for n in names)
            std = init_std if init_std is not None else 1.0 / math.sqrt(rows)
            configs.append(EmbeddingBagConfig(
                name=f"t_{table}", embedding_dim=dims[table], num_embeddings=rows, feature_names=names,
                pooling=_POOLING[pooling], init_fn=_normal_init(std)))
        self.ebc = EmbeddingBagCollection(tables=configs, device=torch.device(device))
        self.feature_order = [n for c in configs for n in c.feature_names]
        self.feature_dims = [c.embedding_dim for c in configs for _ in c.feature_names]
        self.output_dim = sum(self.feature_dims)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.ebc(batch[self.input_key]).values()


def table_dims(tables: list[str], embedding_dim: int, embedding_dims: dict[str, int] | None) -> dict[str, int]:
    """Each table's width: its `embedding_dims` entry, else `embedding_dim`; unknown names and widths < 1 fail."""
    dims = {t: embedding_dim for t in tables}
    for table, dim in (embedding_dims or {}).items():
        if table not in dims:
            raise ConfigError(f"embedding_dims.{table}: unknown table (tables: {', '.join(tables)})",
                              key=f"embedding_dims.{table}")
        dims[table] = dim
    for table, dim in dims.items():
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            key = "embedding_dim" if embedding_dims is None or table not in embedding_dims else f"embedding_dims.{table}"
            raise ConfigError(f"{key}: must be an integer >= 1, got {dim!r}", key=key)
    return dims


def _normal_init(std: float):
    def init(weight: torch.Tensor) -> torch.Tensor:
        return nn.init.normal_(weight, mean=0.0, std=std)

    return init
