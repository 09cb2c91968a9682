"""Distributed training: TorchRec sharding plans, DMP wrapping, sharded checkpoints, Ray Train integration.

`train_distributed` (what `mtrec.train(..., workers=N)` calls) runs the training of `mtrec.train` on N Ray Train
workers (or N local processes) with the embedding tables sharded by a TorchRec plan. Ray is imported only when
a run starts, so `import mtrec` stays light.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from mtrec.distributed.checkpoint import SHARDED_KIND, load_model, load_network_weights
from mtrec.distributed.config import DistributedConfig, coerce, load_job_config
from mtrec.distributed.job import DistributedTrainResult
from mtrec.distributed.planner import AUTO, TableShards, build_plan, format_plan, plan_tables
from mtrec.distributed.sharders import SHARDING_TYPES, EBCSharder
from mtrec.model import MultiTaskModel

LAUNCHERS = ("ray", "processes")


def train_distributed(model: MultiTaskModel, train_df: pd.DataFrame | str, valid: pd.DataFrame | str | None = None,
                      workers: int | None = None, address: str | None = None,
                      distributed: DistributedConfig | dict[str, Any] | None = None, launcher: str = "ray",
                      progress: bool = True, **options: Any) -> DistributedTrainResult:
    """Train `model` on `workers` Ray workers (launcher="ray") or local processes ("processes"); `options` are
    mtrec.train's (epochs, batch_size, seed, lr, ...), `distributed` the DistributedConfig fields."""
    config = coerce(distributed).replace(workers=workers, address=address)
    if launcher == "ray":
        from mtrec.distributed.ray_train import train_on_ray

        return train_on_ray(model, train_df, valid, dist_cfg=config, progress=progress, **options)
    if launcher == "processes":
        from mtrec.distributed.local import train_local

        return train_local(model, train_df, valid, dist_cfg=config, progress=progress, **options)
    raise ValueError(f"launcher: expected one of {', '.join(LAUNCHERS)}, got {launcher!r}")


__all__ = [
    "AUTO", "SHARDED_KIND", "SHARDING_TYPES", "DistributedConfig", "DistributedTrainResult", "EBCSharder",
    "TableShards", "build_plan", "format_plan", "load_job_config", "load_model", "load_network_weights",
    "plan_tables", "train_distributed",
]
