"""Run a distributed job as N local processes without Ray (tests, benchmarks, a laptop): same loop, same checkpoints.

Shards of a frame are written once as Parquet files, one per rank, and each process reads only its own; file
sources are not copied: each process reads its range of the scanned stream (mtrec.distributed.feeds.StreamFeed). Processes meet
through a FileStore (no TCP listener) and checkpoint into the run directory. A failed attempt (a process died or
raised) is retried up to `max_failures` times, resuming from the last complete checkpoint, as Ray's FailureConfig.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import torch.multiprocessing as mp
from tqdm.auto import tqdm

from mtrec.distributed.config import DistributedConfig
from mtrec.distributed.data import shard_frame
from mtrec.distributed.env import backend_for, local_process_group, pick_device
from mtrec.distributed.job import DistributedTrainResult, PreparedJob, finish, prepare
from mtrec.distributed.loop import WorkerSpec, run_worker
from mtrec.distributed.sinks import DirectorySink
from mtrec.model import MultiTaskModel

FINAL_STATE = "final_state.json"


def _shard_path(run_dir: Path, split: str, rank: int) -> Path:
    return run_dir / "shards" / f"{split}-{rank:04d}.parquet"


def write_shards(job: PreparedJob) -> None:
    """Write every rank's train (and valid) rows to its own Parquet file under the run directory (with the
    "global" data order every rank's train file holds the whole frame)."""
    world = job.spec.dist.workers
    for rank in range(world):
        for split, frame in (("train", job.train), ("valid", job.valid)):
            if frame is not None:
                path = _shard_path(job.run_dir, split, rank)
                path.parent.mkdir(parents=True, exist_ok=True)
                whole = split == "train" and job.spec.dist.data_order == "global"
                (frame if whole else shard_frame(frame, rank, world)).to_parquet(path)


def _entry(rank: int, spec: WorkerSpec, world_size: int, store: str, progress: bool) -> None:
    """One spawned rank: join the group, read its own shards, train, and (rank 0) write the final state."""
    run_dir = Path(spec.run_dir)
    device = pick_device(rank, spec.dist.use_gpu if spec.dist.use_gpu is not None else False)
    with local_process_group(store, rank, world_size, backend=backend_for(device)):
        train_path = _shard_path(run_dir, "train", rank)
        train = pd.read_parquet(train_path) if spec.stream is None else None  # a stream: each rank reads its range
        valid_path = _shard_path(run_dir, "valid", rank)
        valid = pd.read_parquet(valid_path) if valid_path.exists() else None
        state = run_worker(spec, rank, world_size, train, valid, DirectorySink(run_dir / "checkpoints"), device,
                           progress)
        if rank == 0:
            (run_dir / FINAL_STATE).write_text(json.dumps(state, indent=2))


def run_local(job: PreparedJob, progress: bool = True) -> tuple[dict[str, Any], Path]:
    """Train on `workers` local processes; returns the final train state and the checkpoint directory."""
    spec = job.spec
    job.run_dir.mkdir(parents=True, exist_ok=True)
    write_shards(job)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, spec.dist.threads_per_worker)))
    attempts = spec.dist.max_failures + 1 if spec.dist.max_failures >= 0 else None
    attempt = 0
    while True:
        attempt += 1
        store = job.run_dir / f"pg-store-{uuid.uuid4().hex}"
        try:
            mp.start_processes(_entry, args=(spec, spec.dist.workers, str(store), progress),
                               nprocs=spec.dist.workers, start_method="spawn")
            break
        except (mp.ProcessRaisedException, mp.ProcessExitedException) as exc:
            if attempts is not None and attempt >= attempts:
                raise RuntimeError(f"distributed run {job.run_dir.name} failed after {attempt} attempt(s): "
                                   f"{str(exc).strip().splitlines()[-1]}") from exc
            tqdm.write(f"attempt {attempt} failed ({str(exc).strip().splitlines()[0]}); resuming from the last "
                       f"checkpoint")
            time.sleep(0.5)
        finally:
            store.unlink(missing_ok=True)
    return json.loads((job.run_dir / FINAL_STATE).read_text()), job.run_dir / "checkpoints"


def train_local(model: MultiTaskModel, train_df: pd.DataFrame | str, valid: pd.DataFrame | str | None = None,
                dist_cfg: DistributedConfig | None = None, progress: bool = True,
                **options: Any) -> DistributedTrainResult:
    """`mtrec.train` on local processes instead of Ray workers (same sharding, loop and checkpoints)."""
    start = time.perf_counter()
    job = prepare(model, train_df, valid, dist_cfg or DistributedConfig(), progress=progress, **options)
    state, root = run_local(job, progress=progress)
    best = root / (state.get("best_checkpoint") or "")
    return finish(model, job, state, best, time.perf_counter() - start)
