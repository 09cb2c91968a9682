"""`task_sparse_features`: one embedding copy per task plus a shared copy (STEM-Net's input layer).

All copies live in a single TorchRec `EmbeddingBagCollection` (one lookup per batch, one fused optimizer,
one module to shard): copy k of feature table `x` is the table `t_x__<copy k>`. The output is copy-major:
`[B, (T+1) * F * embedding_dim]` = [task 0's F features | task 1's | ... | shared], each copy in
`feature_order`, so the `stem` encoder can split it into T+1 equal blocks.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig

from pretrain_stack.embeddings.sparse_features import _POOLING, _normal_init
from pretrain_stack.errors import ConfigError
from pretrain_stack.registry import EMBEDDINGS


def table_groups(features: list[dict], shared_tables: dict[str, list[str]] | None) -> dict[str, list[str]]:
    """Table name -> the features it serves (one table per feature unless `shared_tables` groups them)."""
    sizes = {f["name"]: int(f["num_embeddings"]) for f in features}
    owner: dict[str, str] = {}
    for table, names in (shared_tables or {}).items():
        for n in names:
            if n not in sizes:
                raise ConfigError(f"shared_tables.{table}: unknown feature {n!r}", key=f"shared_tables.{table}")
            owner[n] = table
    tables: dict[str, list[str]] = {}
    for f in features:
        tables.setdefault(owner.get(f["name"], f["name"]), []).append(f["name"])
    return tables


@EMBEDDINGS.register("task_sparse_features")
class TaskSparseFeatureEmbedding(nn.Module):
    """T+1 pooled copies of the sparse features (one per task, then the shared one) in one TorchRec EBC."""

    def __init__(self, features: list[dict], tasks: list[str], embedding_dim: int = 8, pooling: str = "sum",
                 input_key: str = "sparse", shared_tables: dict[str, list[str]] | None = None,
                 init_std: float | None = None, device: str = "cpu") -> None:
        super().__init__()
        if pooling not in _POOLING:
            raise ConfigError(f"pooling: expected one of {sorted(_POOLING)}, got {pooling!r}", key="pooling")
        if not features:
            raise ConfigError("features: the schema has no sparse features", key="features")
        if not tasks:
            raise ConfigError("tasks: task_sparse_features needs at least one task", key="tasks")
        self.input_key = input_key
        self.embedding_dim = embedding_dim
        self.copy_names = [*tasks, "shared"]
        sizes = {f["name"]: int(f["num_embeddings"]) for f in features}
        groups = table_groups(features, shared_tables)
        configs = []
        for k in range(len(self.copy_names)):
            suffix = f"task{k}" if k < len(tasks) else "shared"
            for table, names in groups.items():
                rows = max(sizes[n] for n in names)
                std = init_std if init_std is not None else 1.0 / math.sqrt(rows)
                configs.append(EmbeddingBagConfig(
                    name=f"t_{table}__{suffix}", embedding_dim=embedding_dim, num_embeddings=rows, feature_names=names,
                    pooling=_POOLING[pooling], init_fn=_normal_init(std)))
        self.ebc = EmbeddingBagCollection(tables=configs, device=torch.device(device))
        self.feature_order = [n for names in groups.values() for n in names]
        self.num_copies = len(self.copy_names)
        self.copy_dim = len(self.feature_order) * embedding_dim
        self.output_dim = self.num_copies * self.copy_dim

    def table_name(self, feature_table: str, copy: int) -> str:
        """The EBC table holding copy `copy` (task index, or T for the shared copy) of `feature_table`."""
        suffix = "shared" if copy == self.num_copies - 1 else f"task{copy}"
        return f"t_{feature_table}__{suffix}"

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.ebc(batch[self.input_key]).values()
