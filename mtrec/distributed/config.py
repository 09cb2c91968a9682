"""Distributed-training settings, and job configs: a model recipe with an optional `distributed:` section."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pretrain_stack.config import apply_overrides, from_dict, parse_overrides, read_file
from pretrain_stack.errors import ConfigError

from mtrec.distributed.planner import AUTO, LARGE_TABLE_ROWS
from mtrec.distributed.sharders import SHARDING_TYPES
from mtrec.recipe import Recipe

SECTION = "distributed"
DATA_ORDERS = ("sharded", "global")


@dataclass
class DistributedConfig:
    """How a model trains on Ray workers: how many, where, how its tables shard, how it checkpoints and recovers.

    data_order "sharded" (default): each worker reads only its own rows and shuffles them. "global": every worker
    reads the whole frame and takes its slice of each global batch of the single-process order, so a run is the
    single-process computation split over workers (for verification; it reads W times the data).
    fail_once_at_step is a fault drill: the last worker kills itself once at that step (tests, recovery drills).
    """

    workers: int = 2
    address: str | None = None
    sharding: str = AUTO
    tables: dict[str, str] = field(default_factory=dict)
    checkpoint_every: int = 0
    storage_path: str | None = None
    name: str | None = None
    max_failures: int = 0
    use_gpu: bool | None = None
    cpus_per_worker: float = 1.0
    threads_per_worker: int = 1
    large_table_rows: int = LARGE_TABLE_ROWS
    data_order: str = "sharded"
    fail_once_at_step: int | None = None

    def validate(self) -> None:
        """Range and name checks, naming the key."""
        if self.workers < 1:
            raise ConfigError(f"{SECTION}.workers: must be >= 1, got {self.workers}", key=f"{SECTION}.workers")
        if self.sharding != AUTO and self.sharding not in SHARDING_TYPES:
            raise ConfigError(f"{SECTION}.sharding: expected auto or one of {', '.join(SHARDING_TYPES)}, "
                              f"got {self.sharding!r}", key=f"{SECTION}.sharding")
        for table, kind in self.tables.items():
            if kind not in SHARDING_TYPES:
                raise ConfigError(f"{SECTION}.tables.{table}: expected one of {', '.join(SHARDING_TYPES)}, "
                                  f"got {kind!r}", key=f"{SECTION}.tables.{table}")
        for key in ("checkpoint_every", "max_failures", "threads_per_worker"):
            if getattr(self, key) < (-1 if key == "max_failures" else 0):
                raise ConfigError(f"{SECTION}.{key}: out of range ({getattr(self, key)})", key=f"{SECTION}.{key}")
        if self.data_order not in DATA_ORDERS:
            raise ConfigError(f"{SECTION}.data_order: expected one of {', '.join(DATA_ORDERS)}, got "
                              f"{self.data_order!r}", key=f"{SECTION}.data_order")
        if self.cpus_per_worker <= 0:
            raise ConfigError(f"{SECTION}.cpus_per_worker: must be > 0", key=f"{SECTION}.cpus_per_worker")

    def replace(self, **changes: Any) -> "DistributedConfig":
        """A validated copy with `changes` applied (None values keep the current setting)."""
        given = {k: v for k, v in changes.items() if v is not None}
        unknown = set(given) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown distributed option(s) {', '.join(sorted(unknown))}")
        out = dataclasses.replace(self, **given)
        out.validate()
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for logs and manifests)."""
        return dataclasses.asdict(self)


def coerce(value: "DistributedConfig | dict[str, Any] | None") -> DistributedConfig:
    """A DistributedConfig from itself, a mapping (validated, unknown keys named) or None (defaults)."""
    if isinstance(value, DistributedConfig):
        value.validate()
        return value
    config = from_dict(DistributedConfig, dict(value or {}), prefix=f"{SECTION}.")
    config.validate()
    return config


def load_job_config(path: str | Path, overrides: dict[str, Any] | list[str] | None = None
                    ) -> tuple[Recipe, DistributedConfig]:
    """A recipe file plus its optional `distributed:` section; overrides may target either (`distributed.workers`)."""
    data = read_file(path)
    section = data.pop(SECTION, None) or {}
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    ours = {k[len(SECTION) + 1:]: v for k, v in (overrides or {}).items() if k.startswith(SECTION + ".")}
    theirs = {k: v for k, v in (overrides or {}).items() if not k.startswith(SECTION + ".")}
    recipe = from_dict(Recipe, apply_overrides(Recipe, data, theirs))
    recipe.validate()
    dist_data = apply_overrides(DistributedConfig, dict(section), ours) if ours else dict(section)
    return recipe, coerce(dist_data)
