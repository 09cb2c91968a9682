"""Sharding plans for a network's embedding tables: TorchRec's planner over the workers' topology, with overrides.

`sharding` sets every table's type ("auto" lets the planner choose); `tables` overrides single tables by table
name (`t_age`) or by feature name (`age`). On GPU, "auto" puts tables of at least `large_table_rows` rows row_wise
so the biggest tables spread over every device. The plan prints as table -> sharding type -> ranks.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig
from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
from torchrec.distributed.planner.storage_reservations import FixedPercentageStorageReservation
from torchrec.distributed.planner.types import KernelConfig, PlannerError, TopologyFactory, TrainerConfig
from torchrec.distributed.types import EmbeddingModuleShardingPlan, ShardingPlan, ShardingType

from mtrec.distributed.sharders import SHARDING_TYPES, EBCSharder
from pretrain_stack.errors import ConfigError

AUTO = "auto"
LARGE_TABLE_ROWS = 1_000_000
STORAGE_RESERVED = 0.15


@dataclass(frozen=True)
class TableShards:
    """Where one table lives: its sharding type, the ranks holding shards and each shard's (rows, columns)."""

    module: str
    table: str
    sharding_type: str
    compute_kernel: str
    ranks: tuple[int, ...]
    shard_sizes: tuple[tuple[int, int], ...]
    rows: int
    dim: int


def embedding_tables(module: nn.Module) -> dict[str, EmbeddingBagConfig]:
    """Every table of every EmbeddingBagCollection in `module`, by table name."""
    tables: dict[str, EmbeddingBagConfig] = {}
    for sub in module.modules():
        if isinstance(sub, EmbeddingBagCollection):
            for config in sub.embedding_bag_configs():
                tables[config.name] = config
    return tables


def _check_type(kind: str, key: str) -> None:
    if kind not in SHARDING_TYPES:
        raise ConfigError(f"{key}: unknown sharding type {kind!r} (expected one of {', '.join(SHARDING_TYPES)})",
                          key=key)


def resolve_table_types(tables: Mapping[str, EmbeddingBagConfig], sharding: str = AUTO,
                        overrides: Mapping[str, str] | None = None, device_type: str = "cpu",
                        large_table_rows: int = LARGE_TABLE_ROWS) -> dict[str, str | None]:
    """Table -> requested sharding type (None: the planner chooses), after the default and per-table overrides."""
    if sharding != AUTO:
        _check_type(sharding, "distributed.sharding")
    chosen: dict[str, str | None] = {name: None if sharding == AUTO else sharding for name in tables}
    if sharding == AUTO and device_type == "cuda":
        for name, config in tables.items():
            if config.num_embeddings >= large_table_rows:
                chosen[name] = ShardingType.ROW_WISE.value
    by_feature: dict[str, list[str]] = {}
    for name, config in tables.items():
        for feature in config.feature_names:
            by_feature.setdefault(feature, []).append(name)
    for key, kind in (overrides or {}).items():
        _check_type(kind, f"distributed.tables.{key}")
        targets = [key] if key in tables else by_feature.get(key, [])
        if not targets:
            raise ConfigError(f"distributed.tables.{key}: no table or feature named {key!r} "
                              f"(tables: {', '.join(sorted(tables))})", key=f"distributed.tables.{key}")
        for table in targets:
            chosen[table] = kind
    return chosen


def _constraints(tables: Mapping[str, EmbeddingBagConfig], chosen: Mapping[str, str | None],
                 world_size: int) -> dict[str, ParameterConstraints]:
    out: dict[str, ParameterConstraints] = {}
    for name, kind in chosen.items():
        if kind is None:
            continue
        min_partition = None
        if kind in (ShardingType.COLUMN_WISE.value, ShardingType.TABLE_COLUMN_WISE.value):
            dim = tables[name].embedding_dim
            min_partition = max(4, -(-dim // world_size // 4) * 4)
        out[name] = ParameterConstraints(sharding_types=[kind], min_partition=min_partition)
    return out


def make_topology(world_size: int, device_type: str = "cpu", local_world_size: int | None = None) -> Topology:
    """The planner's view of the workers: CPU memory on CPU, each GPU's HBM on CUDA."""
    hbm_cap = None
    if device_type == "cuda":
        hbm_cap = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    trainer = TrainerConfig(world_size=world_size, local_world_size=local_world_size or world_size,
                            hbm_cap_bytes=hbm_cap)
    return TopologyFactory.create_topology(trainer, kernel_config=KernelConfig(compute_device=device_type))


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """TorchRec warns on the root logger for every data_parallel table (they have no shard spec by design)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def build_plan(module: nn.Module, world_size: int, device_type: str = "cpu", sharding: str = AUTO,
               tables: Mapping[str, str] | None = None, batch_size: int = 256,
               pg: dist.ProcessGroup | None = None, local_world_size: int | None = None,
               large_table_rows: int = LARGE_TABLE_ROWS) -> ShardingPlan:
    """A sharding plan for `module`'s EBCs; with `pg`, planned on rank 0 and broadcast so every rank agrees."""
    found = embedding_tables(module)
    if not found:
        raise ConfigError("the network has no TorchRec embedding tables to shard", key="model.embedding")
    chosen = resolve_table_types(found, sharding, tables, device_type, large_table_rows)
    planner = EmbeddingShardingPlanner(
        topology=make_topology(world_size, device_type, local_world_size), batch_size=batch_size,
        constraints=_constraints(found, chosen, world_size),
        storage_reservation=FixedPercentageStorageReservation(STORAGE_RESERVED))
    sharders = [EBCSharder()]
    try:
        with _quiet_root_logger():
            if pg is not None:
                return planner.collective_plan(module, sharders, pg)
            return planner.plan(module, sharders)
    except PlannerError as exc:
        requested = {t: k for t, k in chosen.items() if k}
        raise ConfigError(f"no sharding plan fits {world_size} {device_type} worker(s) with the requested types "
                          f"{requested or 'auto'}: {str(exc).splitlines()[0]}", key="distributed.sharding") from exc


def plan_tables(plan: ShardingPlan) -> list[TableShards]:
    """The plan as one TableShards per table, in module then table order."""
    rows: list[TableShards] = []
    for module_path, module_plan in plan.plan.items():
        if not isinstance(module_plan, EmbeddingModuleShardingPlan):
            continue
        for table, sharding in module_plan.items():
            shards = sharding.sharding_spec.shards if sharding.sharding_spec is not None else []
            sizes = tuple((int(s.shard_sizes[0]), int(s.shard_sizes[1])) for s in shards)
            ranks = tuple(int(s.placement.rank()) for s in shards) if shards else tuple(sharding.ranks or ())
            total_rows = sum(r for r, _ in sizes) if sharding.sharding_type == ShardingType.ROW_WISE.value else (
                sizes[0][0] if sizes else 0)
            total_dim = sum(c for _, c in sizes) if sharding.sharding_type in (
                ShardingType.COLUMN_WISE.value, ShardingType.TABLE_COLUMN_WISE.value) else (sizes[0][1] if sizes else 0)
            rows.append(TableShards(module_path, table, sharding.sharding_type, sharding.compute_kernel, ranks, sizes,
                                    total_rows, total_dim))
    return rows


def format_plan(plan: ShardingPlan, world_size: int | None = None) -> str:
    """A readable table: table -> sharding type -> ranks (and shard shapes)."""
    entries = plan_tables(plan)
    header = f"sharding plan ({world_size} workers)" if world_size else "sharding plan"
    width = max([len(e.table) for e in entries] + [5])
    lines = [header, f"  {'table':<{width}}  {'type':<17}  {'kernel':<7}  ranks      shards (rows x cols)"]
    for e in entries:
        ranks = "all" if e.sharding_type == ShardingType.DATA_PARALLEL.value else ",".join(map(str, e.ranks))
        shards = " ".join(f"{r}x{c}" for r, c in e.shard_sizes) or "replicated"
        lines.append(f"  {e.table:<{width}}  {e.sharding_type:<17}  {e.compute_kernel:<7}  {ranks:<9}  {shards}")
    return "\n".join(lines)
