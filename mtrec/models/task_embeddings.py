"""`task_sparse_features`: one embedding copy per task plus a shared copy (STEM-Net's input layer).

All copies live in a single TorchRec `EmbeddingBagCollection` (one lookup per batch, one fused optimizer,
one module to shard): copy k of feature table `x` is the table `t_x__<copy k>`. The output is copy-major:
`[B, (T+1) * F * embedding_dim]` = [task 0's F features | task 1's | ... | shared], each copy in
`feature_order`, so the `stem` encoder can split it into T+1 equal blocks.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchrec import EmbeddingBagCollection

from pretrain_stack.embeddings.sparse_features import check_sparse_config, table_config, table_groups
from pretrain_stack.errors import ConfigError
from pretrain_stack.registry import EMBEDDINGS


@EMBEDDINGS.register("task_sparse_features")
class TaskSparseFeatureEmbedding(nn.Module):
    """T+1 pooled copies of the sparse features (one per task, then the shared one) in one TorchRec EBC."""

    def __init__(self, features: list[dict], tasks: list[str], embedding_dim: int = 8, pooling: str = "sum",
                 input_key: str = "sparse", shared_tables: dict[str, list[str]] | None = None,
                 init_std: float | None = None, device: str = "cpu") -> None:
        super().__init__()
        check_sparse_config(features, pooling)
        if not tasks:
            raise ConfigError("tasks: task_sparse_features needs at least one task", key="tasks")
        self.input_key = input_key
        self.embedding_dim = embedding_dim
        self.copy_names = [*tasks, "shared"]
        self.num_copies = len(self.copy_names)
        sizes = {f["name"]: int(f["num_embeddings"]) for f in features}
        groups = table_groups(features, shared_tables)
        configs = [table_config(self.table_name(table, k), max(sizes[n] for n in names), embedding_dim, names,
                                pooling, init_std) for k in range(self.num_copies) for table, names in groups.items()]
        self.ebc = EmbeddingBagCollection(tables=configs, device=torch.device(device))
        self.feature_order = [n for names in groups.values() for n in names]
        self.copy_dim = len(self.feature_order) * embedding_dim
        self.output_dim = self.num_copies * self.copy_dim

    def table_name(self, feature_table: str, copy: int) -> str:
        """The EBC table holding copy `copy` (task index, or T for the shared copy) of `feature_table`."""
        suffix = "shared" if copy == self.num_copies - 1 else f"task{copy}"
        return f"t_{feature_table}__{suffix}"

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.ebc(batch[self.input_key]).values()
