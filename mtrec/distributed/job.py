"""The driver's side of a distributed run: prepare what workers need, then take the trained weights back.

The driver fits the vocabularies on the whole training frame (every worker must size its tables alike) but builds
no network unless the model already has weights: workers build it from the same seed, so a fresh run starts
from exactly the single-process initialization. At the end the best epoch's sharded checkpoint loads into the
driver's unsharded model, ready for `mtrec.save`, `evaluate`, `add_task` or `quantize`.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mtrec.data.io import read_frame
from mtrec.data.vocab import Vocabularies
from mtrec.distributed.checkpoint import load_network_weights, model_manifest
from mtrec.distributed.config import DistributedConfig
from mtrec.distributed.data import local_batch_size, steps_per_epoch
from mtrec.distributed.loop import TrainState, WorkerSpec
from mtrec.model import MultiTaskModel
from mtrec.train.loop import TrainResult, require_steps, resolve_config
from pretrain_stack.errors import ConfigError

DEFAULT_STORAGE = "~/ray_results"


@dataclass
class DistributedTrainResult(TrainResult):
    """A TrainResult plus where the run's sharded checkpoints are, the plan, and the step/data accounting."""

    checkpoint: str | None = None
    run_dir: str | None = None
    workers: int = 0
    plan: list[dict[str, Any]] = field(default_factory=list)
    planned_steps: int = 0
    ledger: list[list[int]] = field(default_factory=list)
    resumes: list[int] = field(default_factory=list)


@dataclass
class PreparedJob:
    """A WorkerSpec plus the frames the launcher splits over the workers."""

    spec: WorkerSpec
    train: pd.DataFrame
    valid: pd.DataFrame | None
    vocabs: Vocabularies
    run_dir: Path


def run_name(model: MultiTaskModel, given: str | None) -> str:
    """The run's directory name: the configured one, or model name + time + a short random suffix."""
    return given or f"mtrec-{model.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def prepare(model: MultiTaskModel, train_df: pd.DataFrame | str, valid: pd.DataFrame | str | None,
            dist_cfg: DistributedConfig, **options: Any) -> PreparedJob:
    """Resolve settings, fit vocabularies (or reuse the model's), validate the split, and build the WorkerSpec."""
    cfg = resolve_config(model, **options)
    if cfg.flatness is not None:
        raise ConfigError("train.flatness: sharpness-aware training runs in one process; drop workers/distributed "
                          "or the flatness setting", key="train.flatness")
    train = read_frame(train_df)
    valid_frame = read_frame(valid) if valid is not None else None
    local_batch_size(cfg.batch_size, dist_cfg.workers)
    require_steps(steps_per_epoch(len(train), cfg.batch_size, dist_cfg.workers), len(train), cfg.batch_size,
                  dist_cfg.workers)
    if valid_frame is not None and len(valid_frame) < dist_cfg.workers:
        raise ValueError(f"{len(valid_frame)} validation rows cannot split over {dist_cfg.workers} workers")
    vocabs = model.vocabs if model.is_built else Vocabularies.fit(train, model.schema)
    weights = {k: v.detach().clone() for k, v in model.require_network().state_dict().items()} \
        if model.is_built else None
    storage = Path(dist_cfg.storage_path or DEFAULT_STORAGE).expanduser().resolve()
    name = run_name(model, dist_cfg.name)
    dist_cfg = dist_cfg.replace(storage_path=str(storage), name=name)
    spec = WorkerSpec(manifest=model_manifest(model, vocabs, storage / name), train=cfg, dist=dist_cfg,
                      train_rows=len(train),
                      valid_rows=len(valid_frame) if valid_frame is not None else None,
                      run_dir=str(storage / name), initial_weights=weights)
    return PreparedJob(spec, train, valid_frame, vocabs, storage / name)


def finish(model: MultiTaskModel, job: PreparedJob, final_state: dict[str, Any], best_checkpoint: Path,
           seconds: float) -> DistributedTrainResult:
    """Load the best checkpoint's weights into `model` (building its network if needed) and summarize the run."""
    if not model.is_built:
        model.build_network(job.vocabs, seed=job.spec.train.seed)
    network = model.require_network()
    load_network_weights(best_checkpoint, network)
    network.eval()
    state = TrainState.from_dict(final_state)
    return DistributedTrainResult(
        history=state.history, best_epoch=state.best_epoch, best_valid=state.best_valid, seconds=seconds,
        steps=state.step, examples=state.examples, checkpoint=str(best_checkpoint), run_dir=str(job.run_dir),
        workers=job.spec.dist.workers, plan=state.plan, planned_steps=state.planned_steps, ledger=state.ledger,
        resumes=state.resumes)
