"""`sparse_features`: pooled embeddings of categorical (possibly multi-valued) features via TorchRec.

One `EmbeddingBagConfig` per table inside a TorchRec `EmbeddingBagCollection`; by default each feature has its
own table, `shared_tables` maps a table name to several features that share it. Every table has
`embedding_dim` columns unless `embedding_dims` gives it its own (keyed by table name: the feature's name, or the
`shared_tables` name). Input is a `KeyedJaggedTensor` at `batch[input_key]`; output is the pooled embeddings
concatenated in `feature_order`, `feature_dims[i]` columns for feature i. The table grouping (`table_groups`),
one table's config (`table_config`), the config check, `table_dims` and `POOLING` are public: embeddings built on
other layouts (mtrec's per-task copies) use them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, PoolingType

from pretrain_stack.errors import ConfigError
from pretrain_stack.registry import EMBEDDINGS

POOLING = {"sum": PoolingType.SUM, "mean": PoolingType.MEAN}


def check_sparse_config(features: list[dict], pooling: str) -> None:
    """ConfigError naming the key unless `pooling` is known and there is at least one feature."""
    if pooling not in POOLING:
        raise ConfigError(f"pooling: expected one of {sorted(POOLING)}, got {pooling!r}", key="pooling")
    if not features:
        raise ConfigError("features: the schema has no sparse features", key="features")


def table_groups(features: list[dict], shared_tables: dict[str, list[str]] | None) -> dict[str, list[str]]:
    """Table name -> the features it serves (one table per feature unless `shared_tables` groups them)."""
    known = {f["name"] for f in features}
    owner: dict[str, str] = {}
    for table, names in (shared_tables or {}).items():
        for n in names:
            if n not in known:
                raise ConfigError(f"shared_tables.{table}: unknown feature {n!r}", key=f"shared_tables.{table}")
            owner[n] = table
    tables: dict[str, list[str]] = {}
    for f in features:
        tables.setdefault(owner.get(f["name"], f["name"]), []).append(f["name"])
    return tables


def table_config(name: str, rows: int, embedding_dim: int, features: list[str], pooling: str,
                 init_std: float | None = None) -> EmbeddingBagConfig:
    """One pooled table of `rows` x `embedding_dim` for `features`, initialised N(0, init_std), by default
    N(0, 1/sqrt(rows))."""
    std = init_std if init_std is not None else 1.0 / math.sqrt(rows)
    return EmbeddingBagConfig(name=name, embedding_dim=embedding_dim, num_embeddings=rows, feature_names=features,
                              pooling=POOLING[pooling], init_fn=normal_init(std))


@EMBEDDINGS.register("sparse_features")
class SparseFeatureEmbedding(nn.Module):
    """TorchRec EBC over `features` ([{"name", "num_embeddings"}, ...]); output [B, sum(feature_dims)]."""

    def __init__(self, features: list[dict], embedding_dim: int = 8, pooling: str = "sum", input_key: str = "sparse",
                 shared_tables: dict[str, list[str]] | None = None, init_std: float | None = None,
                 device: str = "cpu", embedding_dims: dict[str, int] | None = None) -> None:
        super().__init__()
        check_sparse_config(features, pooling)
        self.input_key = input_key
        self.embedding_dim = embedding_dim
        sizes = {f["name"]: int(f["num_embeddings"]) for f in features}
        tables = table_groups(features, shared_tables)
        dims = table_dims(list(tables), embedding_dim, embedding_dims)
        configs = [table_config(f"t_{table}", max(sizes[n] for n in names), dims[table], names, pooling, init_std)
                   for table, names in tables.items()]
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


def normal_init(std: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """An init_fn for TorchRec tables: weights drawn from N(0, std)."""

    def init(weight: torch.Tensor) -> torch.Tensor:
        return nn.init.normal_(weight, mean=0.0, std=std)

    return init
