"""The EmbeddingBagCollection sharder mtrec plans and shards with.

Two differences from TorchRec's: it offers row_wise on CPU too (TorchRec lists it for CUDA only although its
CPU kernels and gloo collectives handle it), and the sharded module returns its KeyedTensor with the features in
the unsharded EBC's order. TorchRec groups a sharded EBC's output by sharding type, so a consumer that reads
`KeyedTensor.values()` positionally (as the embedding components do) would otherwise see permuted features.
"""

from __future__ import annotations

from typing import Any

import torch
from torchrec import EmbeddingBagCollection
from torchrec.distributed.embeddingbag import (EmbeddingBagCollectionContext, EmbeddingBagCollectionSharder,
                                               ShardedEmbeddingBagCollection)
from torchrec.distributed.types import LazyAwaitable, ParameterSharding, ShardingEnv, ShardingType
from torchrec.sparse.jagged_tensor import KeyedTensor

SHARDING_TYPES: tuple[str, ...] = (
    ShardingType.DATA_PARALLEL.value,
    ShardingType.TABLE_WISE.value,
    ShardingType.COLUMN_WISE.value,
    ShardingType.ROW_WISE.value,
    ShardingType.TABLE_COLUMN_WISE.value,
)


class OrderedShardedEBC(ShardedEmbeddingBagCollection):
    """A sharded EBC whose output lists features in the order the unsharded EBC returns them."""

    def __init__(self, *args: Any, feature_order: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._feature_order = list(feature_order)
        self._reorder_cache: dict[tuple[str, ...], tuple[torch.Tensor, list[int]] | None] = {}

    def _in_order(self, kt: KeyedTensor) -> KeyedTensor:
        keys = tuple(kt.keys())
        if keys not in self._reorder_cache:
            if list(keys) == self._feature_order:
                self._reorder_cache[keys] = None
            else:
                offsets, lengths = kt.offset_per_key(), kt.length_per_key()
                where = {k: i for i, k in enumerate(keys)}
                columns = [c for k in self._feature_order for c in range(offsets[where[k]], offsets[where[k] + 1])]
                self._reorder_cache[keys] = (torch.tensor(columns, device=kt.values().device),
                                             [lengths[where[k]] for k in self._feature_order])
        plan = self._reorder_cache[keys]
        if plan is None:
            return kt
        index, lengths = plan
        return KeyedTensor(keys=self._feature_order, length_per_key=lengths,
                           values=kt.values().index_select(kt.key_dim(), index), key_dim=kt.key_dim())

    def output_dist(self, ctx: EmbeddingBagCollectionContext, output: list[torch.Tensor]) -> LazyAwaitable[KeyedTensor]:
        awaitable = super().output_dist(ctx, output)
        awaitable.callbacks.append(self._in_order)
        return awaitable

    def compute_and_output_dist(self, ctx: EmbeddingBagCollectionContext, input: Any) -> LazyAwaitable[KeyedTensor]:
        awaitable = super().compute_and_output_dist(ctx, input)
        awaitable.callbacks.append(self._in_order)
        return awaitable


class EBCSharder(EmbeddingBagCollectionSharder):
    """TorchRec's EBC sharder restricted to SHARDING_TYPES, offering row_wise on CPU, keeping the feature order."""

    def sharding_types(self, compute_device_type: str) -> list[str]:
        """Sharding types the planner may choose for a table on `compute_device_type`."""
        offered = super().sharding_types("cuda" if compute_device_type == "cpu" else compute_device_type)
        return [t for t in offered if t in SHARDING_TYPES]

    def shard(self, module: EmbeddingBagCollection, params: dict[str, ParameterSharding], env: ShardingEnv,
              device: torch.device | None = None, module_fqn: str | None = None) -> OrderedShardedEBC:
        """The sharded module, returning features in `module`'s own order."""
        order = [f for config in module.embedding_bag_configs() for f in config.feature_names]
        return OrderedShardedEBC(module=module, table_name_to_parameter_sharding=params, env=env,
                                 fused_params=self.fused_params, device=device,
                                 qcomm_codecs_registry=self.qcomm_codecs_registry, module_fqn=module_fqn,
                                 sharded_module_order_overwrite=self._sharded_module_order_overwrite,
                                 feature_order=order)
