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
from mtrec.data.stream import StreamOptions, is_dataset, is_file_source, take_options
from mtrec.data.vocab import FitOptions, Vocabularies
from mtrec.distributed.checkpoint import load_network_weights, model_manifest
from mtrec.distributed.config import DistributedConfig
from mtrec.distributed.data import local_batch_size, steps_per_epoch
from mtrec.distributed.loop import TrainState, WorkerSpec
from mtrec.model import MultiTaskModel
from mtrec.train.loop import ScannedData, TrainResult, require_steps, resolve_config, scan_sources
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
    """A WorkerSpec plus the frames the launcher splits over the workers (file sources: the scanned streams are in
    the spec and `train` is None)."""

    spec: WorkerSpec
    train: pd.DataFrame | None
    valid: pd.DataFrame | None
    vocabs: Vocabularies
    run_dir: Path
    data: ScannedData | None = None


def run_name(model: MultiTaskModel, given: str | None) -> str:
    """The run's directory name: the configured one, or model name + time + a short random suffix."""
    return given or f"mtrec-{model.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def prepare(model: MultiTaskModel, train_df: Any, valid: Any, dist_cfg: DistributedConfig, progress: bool = True,
            **options: Any) -> PreparedJob:
    """Resolve settings, fit vocabularies (or reuse the model's), validate the split, and build the WorkerSpec.
    File sources are scanned here (validated, counted, vocabularies fitted; rejected rows go to the run directory);
    the workers then read them as streams."""
    stream_options, options = take_options(StreamOptions, options)
    fit_options, options = take_options(FitOptions, options)
    cfg = resolve_config(model, **options)
    if cfg.flatness is not None:
        raise ConfigError("train.flatness: sharpness-aware training runs in one process; drop workers/distributed "
                          "or the flatness setting", key="train.flatness")
    local_batch_size(cfg.batch_size, dist_cfg.workers)
    storage = Path(dist_cfg.storage_path or DEFAULT_STORAGE).expanduser().resolve()
    name = run_name(model, dist_cfg.name)
    dist_cfg = dist_cfg.replace(storage_path=str(storage), name=name)
    data, train = None, None
    if is_file_source(train_df) or is_file_source(valid) or is_dataset(train_df):
        data = scan_sources(model, train_df, valid, cfg, stream_options, fit_options, progress, storage / name)
        rows, valid_frame = data.train.rows, data.valid_frame
        valid_rows = data.valid.rows if data.valid is not None else None
        vocabs = data.vocabs
    else:
        train = read_frame(train_df)
        valid_frame = read_frame(valid) if valid is not None else None
        rows, valid_rows = len(train), None
        vocabs = model.vocabs if model.is_built else Vocabularies.fit(train, model.schema)
    if valid_frame is not None:
        valid_rows = len(valid_frame)
    require_steps(steps_per_epoch(rows, cfg.batch_size, dist_cfg.workers), rows, cfg.batch_size, dist_cfg.workers)
    if valid_rows is not None and valid_rows < dist_cfg.workers:
        raise ValueError(f"{valid_rows} validation rows cannot split over {dist_cfg.workers} workers")
    weights = {k: v.detach().clone() for k, v in model.require_network().state_dict().items()} \
        if model.is_built else None
    spec = WorkerSpec(manifest=model_manifest(model, vocabs, storage / name), train=cfg, dist=dist_cfg,
                      train_rows=rows, valid_rows=valid_rows, run_dir=str(storage / name), initial_weights=weights,
                      stream=data.train if data is not None else None,
                      valid_stream=data.valid if data is not None else None)
    return PreparedJob(spec, train, valid_frame, vocabs, storage / name, data)


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
        resumes=state.resumes, data=job.data.summary() if job.data is not None else {})
