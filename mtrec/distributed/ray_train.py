"""Distributed training on Ray Train (TorchTrainer): an embedded loopback-only local Ray, or an existing cluster.

The driver fits vocabularies, puts each worker's rows in the object store (a worker fetches only its own), and
runs `TorchTrainer` with `FailureConfig(max_failures=k)`. Workers checkpoint through `ray.train.report` (DCP
shards from every rank merged into one directory under the run's storage) and resume from
`ray.train.get_checkpoint()` after a failure. On a single-node cluster the process group meets through a
FileStore and gloo binds to loopback, so nothing listens beyond 127.0.0.1; across nodes Ray's TCP rendezvous is
used (then `storage_path` must be storage every node reaches, as Ray Train requires). GPUs, when the cluster has
one per worker, get nccl and CUDA devices.
"""

from __future__ import annotations

import contextlib
import math
import os
import posixpath
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import ray
import ray.train
from ray.train import Checkpoint, CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.backend import Backend
from ray.train.torch import TorchConfig, TorchTrainer

from mtrec.data.ray_source import stream_dataset
from mtrec.distributed.checkpoint import read_train_state
from mtrec.distributed.config import DistributedConfig
from mtrec.distributed.data import shard_frame
from mtrec.distributed.env import destroy_process_group, init_local_process_group, pick_device
from mtrec.distributed.job import DistributedTrainResult, finish, prepare
from mtrec.distributed.loop import WorkerSpec, run_worker
from mtrec.model import MultiTaskModel
from mtrec.ray_session import ray_session

TRAIN = "train"  # the Ray Data dataset a file stream is read through
INGEST_BUFFER_BYTES = 256 * 2**20  # object-store budget of the training stream's blocks in flight
READ_CPUS = 1  # CPUs a run on files keeps free for its Ray Data read tasks (each asks for half of one)
PG_TIMEOUT_S = 1800


def _join_group(store: str, rank: int, world_size: int, backend: str, timeout_s: float) -> None:
    """Run on a worker: join the FileStore process group (returns nothing, so nothing unpicklable travels back)."""
    init_local_process_group(store, rank, world_size, backend, timeout_s)


class _FileRendezvousBackend(Backend):
    """Process-group setup for single-node runs: a FileStore rendezvous instead of a TCPStore on every interface."""

    share_cuda_visible_devices = True

    def on_start(self, worker_group: Any, backend_config: "LoopbackTorchConfig") -> None:
        store = os.path.join(backend_config.store_dir, f"pg-store-{uuid.uuid4().hex}")
        size = len(worker_group)
        ray.get([worker_group.execute_single_async(rank, _join_group, store, rank, size,
                                                   backend_config.backend or "gloo", backend_config.timeout_s)
                 for rank in range(size)])

    def on_shutdown(self, worker_group: Any, backend_config: "LoopbackTorchConfig") -> None:
        worker_group.execute(destroy_process_group)


@dataclass
class LoopbackTorchConfig(TorchConfig):
    """TorchConfig whose process group meets through a FileStore in `store_dir` (every worker on one machine)."""

    store_dir: str = ""

    @property
    def backend_cls(self) -> type[Backend]:
        return _FileRendezvousBackend


class RayCheckpoints:
    """CheckpointSink over Ray Train: write to a temporary directory and report it; resume from get_checkpoint."""

    @contextlib.contextmanager
    def latest(self) -> Iterator[Path | None]:
        """The run's latest reported checkpoint, as a local directory."""
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            yield None
            return
        with checkpoint.as_directory() as local:
            yield Path(local)

    def save(self, name: str, write: Callable[[Path], None], metrics: dict[str, Any]) -> None:
        """Every rank writes its shards locally; Ray merges them into storage as checkpoint `name`."""
        with tempfile.TemporaryDirectory(prefix="mtrec-ckpt-") as local:
            write(Path(local))
            ray.train.report({k: v for k, v in metrics.items() if v is not None},
                             checkpoint=Checkpoint.from_directory(local), checkpoint_dir_name=name)


def ingest_config() -> DataConfig:
    """Ray Train's ingest of a file stream: split over the workers with the input order preserved (the equal split
    is then the same every epoch and after a restart, mtrec.distributed.feeds) and a bounded object-store budget,
    so only a few blocks are in flight whatever the input's size."""
    from ray.data import ExecutionOptions, ExecutionResources

    options = ExecutionOptions(preserve_order=True,
                               resource_limits=ExecutionResources.for_limits(object_store_memory=INGEST_BUFFER_BYTES))
    return DataConfig(datasets_to_split=[TRAIN], execution_options=options)


def _worker_entry(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker: fetch this rank's rows, train, checkpoint through Ray."""
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    spec: WorkerSpec = config["spec"]
    train = ray.get(config["train"][rank]) if config["train"] else ray.train.get_dataset_shard(TRAIN)
    valid = ray.get(config["valid"][rank]) if config["valid"] else None
    device = pick_device(context.get_local_rank(), config["use_gpu"])
    run_worker(spec, rank, world_size, train, valid, RayCheckpoints(), device, progress=config["progress"],
               local_world_size=context.get_local_world_size())


def _single_node() -> bool:
    return sum(1 for node in ray.nodes() if node.get("Alive")) == 1


def _use_gpu(dist_cfg: DistributedConfig) -> bool:
    if dist_cfg.use_gpu is not None:
        return dist_cfg.use_gpu
    return ray.cluster_resources().get("GPU", 0) >= dist_cfg.workers


def _checkpoint_at(reference: Checkpoint, name: str) -> Checkpoint:
    """The checkpoint `name` beside `reference` in the run's storage."""
    return Checkpoint(path=posixpath.join(posixpath.dirname(reference.path), name), filesystem=reference.filesystem)


def train_on_ray(model: MultiTaskModel, train_df: pd.DataFrame | str, valid: pd.DataFrame | str | None = None,
                 dist_cfg: DistributedConfig | None = None, progress: bool = True,
                 **options: Any) -> DistributedTrainResult:
    """`mtrec.train` on `dist_cfg.workers` Ray Train workers; the model ends with the best epoch's weights."""
    start = time.perf_counter()
    dist_cfg = dist_cfg or DistributedConfig()
    job = prepare(model, train_df, valid, dist_cfg, progress=progress, **options)
    spec, world = job.spec, dist_cfg.workers
    # a file stream's Ray Data read tasks need a CPU beside the workers' (else they wait for one forever)
    reader_cpus = READ_CPUS if job.spec.stream is not None else 0
    num_cpus = max(os.cpu_count() or 1, math.ceil(world * dist_cfg.cpus_per_worker + reader_cpus))
    with ray_session(dist_cfg.address, num_cpus=num_cpus), tempfile.TemporaryDirectory(prefix="mtrec-pg-") as rdv:
        use_gpu = _use_gpu(dist_cfg)
        backend = "nccl" if use_gpu else "gloo"
        torch_config = LoopbackTorchConfig(backend=backend, timeout_s=PG_TIMEOUT_S, store_dir=rdv) \
            if _single_node() else TorchConfig(backend=backend, timeout_s=PG_TIMEOUT_S)
        threads = str(max(1, spec.train.threads or dist_cfg.threads_per_worker))
        datasets, data_config = {}, None
        if job.train is None:  # a file stream: Ray Data reads it, split over the workers
            datasets, data_config = {TRAIN: stream_dataset(job.spec.stream)}, ingest_config()
            train_refs = []
        elif dist_cfg.data_order == "global":
            train_refs = [ray.put(job.train)] * world
        else:
            train_refs = [ray.put(shard_frame(job.train, rank, world)) for rank in range(world)]
        valid_refs = [ray.put(shard_frame(job.valid, rank, world)) for rank in range(world)] \
            if job.valid is not None else []
        trainer = TorchTrainer(
            _worker_entry,
            train_loop_config={"spec": spec, "train": train_refs, "valid": valid_refs, "use_gpu": use_gpu,
                               "progress": progress},
            torch_config=torch_config, datasets=datasets, **({"dataset_config": data_config} if data_config else {}),
            scaling_config=ScalingConfig(num_workers=world, use_gpu=use_gpu,
                                         resources_per_worker={"CPU": dist_cfg.cpus_per_worker}),
            run_config=RunConfig(name=spec.dist.name, storage_path=spec.dist.storage_path,
                                 failure_config=FailureConfig(max_failures=dist_cfg.max_failures),
                                 checkpoint_config=CheckpointConfig(num_to_keep=None),
                                 worker_runtime_env={"env_vars": {"OMP_NUM_THREADS": threads}}))
        result = trainer.fit()
        if result.checkpoint is None:
            raise RuntimeError(f"Ray run {spec.dist.name} finished without a checkpoint (error: {result.error})")
        with result.checkpoint.as_directory() as latest:
            final_state = read_train_state(latest)
        best = _checkpoint_at(result.checkpoint, final_state.get("best_checkpoint") or
                              posixpath.basename(result.checkpoint.path))
        with best.as_directory() as local:
            return finish(model, job, final_state, Path(local), time.perf_counter() - start)
