"""The per-worker training loop: DMP-sharded tables, TrainPipelineSparseDist, sharded checkpoints, exact resume.

Every worker runs `run_worker` with its own shard of the rows. Steps, progress (the GRL schedule), validation,
early stopping and checkpoints follow the single-process loop (mtrec.train.loop); the global batch is split over
the workers. A checkpoint records the step counter, the position in the epoch and a ledger of the (epoch, batch)
ranges applied so far, so a run resumed after a failure re-applies nothing and skips nothing.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable, Iterator
from typing import Any

import pandas as pd
import torch
import torch.distributed as dist
from torchrec.distributed import DistributedModelParallel
from torchrec.distributed.train_pipeline import TrainPipelineSparseDist
from tqdm.auto import tqdm

from mtrec.data.batches import EncodedFrame
from mtrec.data.stream import FileStream, epoch_accounting
from mtrec.checkpoint import model_from_manifest
from mtrec.distributed.checkpoint import load_sharded, run_files, save_sharded
from mtrec.distributed.config import DistributedConfig
from mtrec.distributed.data import global_steps_per_epoch, local_batch_size, padded_positions, steps_per_epoch
from mtrec.distributed.feeds import Feed, FrameFeed, Placement, RayDataFeed, StreamFeed
from mtrec.distributed.env import quiet_worker_logs
from mtrec.distributed.planner import build_plan, format_plan, plan_tables
from mtrec.distributed.sinks import CheckpointSink
from mtrec.distributed.wrap import make_optimizer, shard
from mtrec.model import task_probabilities
from mtrec.recipe import TrainConfig
from mtrec.train.loop import seed_everything
from mtrec.train.epochs import EpochLoop, LoopSettings, LoopState, Validation
from mtrec.train.execution import describe, resolve_bf16
from mtrec.train.metrics import Metrics, task_metrics

FAILURE_MARKER = "failure_injected"
DRILL_DELAY_S = 3.0


@dataclass
class WorkerSpec:
    """What every worker needs (picklable): the model manifest, settings, the global row counts, a run directory,
    and for file sources the scanned streams (small: pieces and counts, no rows)."""

    manifest: dict[str, Any]
    train: TrainConfig
    dist: DistributedConfig
    train_rows: int
    valid_rows: int | None
    run_dir: str
    initial_weights: dict[str, torch.Tensor] | None = None
    stream: FileStream | None = None
    valid_stream: FileStream | None = None


@dataclass
class TrainState(LoopState):
    """Where training stands (the epoch loop's state plus the run's accounting); saved with every checkpoint and
    restored on resume."""

    planned_steps: int = 0
    steps_per_epoch: int = 0
    world_size: int = 1
    best_checkpoint: str | None = None
    ledger: list[list[int]] = field(default_factory=list)
    resumes: list[int] = field(default_factory=list)
    plan: list[dict[str, Any]] = field(default_factory=list)

    def record_batch(self, epoch: int, batch: int) -> None:
        """Append (epoch, batch) to the ledger, extending the last range when contiguous."""
        if self.ledger and self.ledger[-1][0] == epoch and self.ledger[-1][2] == batch:
            self.ledger[-1][2] = batch + 1
        else:
            self.ledger.append([epoch, batch, batch + 1])


def check_ledger(state: TrainState) -> None:
    """Raise if the applied (epoch, batch) ranges skip or repeat a batch, or disagree with the step counter."""
    expected_epoch, expected_batch, applied = 1, 0, 0
    for epoch, start, stop in state.ledger:
        if epoch != expected_epoch:
            if expected_batch != state.steps_per_epoch or epoch != expected_epoch + 1:
                raise RuntimeError(f"ledger skips or repeats data: epoch {expected_epoch} ended at batch "
                                   f"{expected_batch}, next range starts epoch {epoch}")
            expected_epoch, expected_batch = epoch, 0
        if start != expected_batch:
            raise RuntimeError(f"ledger skips or repeats data in epoch {epoch}: expected batch {expected_batch}, "
                               f"range starts at {start}")
        expected_batch = stop
        applied += stop - start
    if applied != state.step:
        raise RuntimeError(f"ledger holds {applied} batches but {state.step} optimizer steps ran")


def _comm_device() -> torch.device:
    """Where collective buffers must live: the current CUDA device under nccl, else the CPU."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _rank_mean(value: float) -> float:
    """Collective: the mean of `value` over every rank (the same number on every rank afterwards)."""
    t = torch.tensor([value], dtype=torch.float64, device=_comm_device())
    if dist.is_initialized():
        dist.all_reduce(t)
        t /= dist.get_world_size()
    return float(t[0])


def evaluate_sharded(model: DistributedModelParallel, valid: Iterable[EncodedFrame], real_rows: int, tasks: list[str],
                     batch_size: int) -> Metrics:
    """Collective: per-task metrics of the sharded model on the union of every rank's (padded) validation shard,
    given as encoded parts (one frame, or the windows of a stream)."""
    model.eval()
    parts, label_parts = [], []
    with torch.no_grad():
        for part in valid:
            for batch in part.batches(batch_size):
                _, (_, logits) = model(batch.to(model.device))
                parts.append(task_probabilities(logits.float()).cpu())
            label_parts.append(part.labels)
    probs = torch.cat(parts)
    labels = torch.cat(label_parts)
    local = torch.cat([probs, labels, torch.full((len(probs), 1), float(real_rows))], dim=1).to(_comm_device())
    if dist.is_initialized():
        gathered = [torch.empty_like(local) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, local)
    else:
        gathered = [local]
    rows = [g[: int(g[0, -1])].cpu() for g in gathered]
    merged = torch.cat(rows).numpy()
    t = len(tasks)
    return task_metrics(merged[:, t:2 * t], merged[:, :t], tasks)


class _Worker:
    """One rank's training run (state kept on the instance so the loop reads like the single-process one)."""

    def __init__(self, spec: WorkerSpec, rank: int, world_size: int, train_shard: Any,
                 valid_shard: pd.DataFrame | None, sink: CheckpointSink, device: torch.device,
                 progress: bool, local_world_size: int | None = None) -> None:
        self.spec, self.rank, self.world_size, self.sink, self.device = spec, rank, world_size, sink, device
        self.cfg, self.dcfg = spec.train, spec.dist
        self.show = progress and rank == 0
        seed_everything(self.cfg.seed)
        self.model = model_from_manifest(spec.manifest, seed=self.cfg.seed, directory=spec.run_dir)
        network = self.model.require_network()
        if spec.initial_weights is not None:
            network.load_state_dict(spec.initial_weights)
        self.global_order = self.dcfg.data_order == "global"
        self.feed = self._feed(train_shard)
        self.valid: EncodedFrame | None = None
        self.valid_real = 0
        if valid_shard is not None and spec.valid_rows:
            target = -(-spec.valid_rows // world_size)
            self.valid_real = len(valid_shard)
            self.valid = self.model.encode(valid_shard.iloc[padded_positions(len(valid_shard), target)])
        self.local_batch = local_batch_size(self.cfg.batch_size, world_size)
        pg = dist.group.WORLD if dist.is_initialized() else None
        plan = build_plan(network, world_size, device.type, self.dcfg.sharding, self.dcfg.tables,
                          batch_size=self.local_batch, pg=pg, local_world_size=local_world_size,
                          large_table_rows=self.dcfg.large_table_rows)
        if rank == 0:
            tqdm.write(format_plan(plan, world_size))
        self.plan_rows = [dataclasses.asdict(t) for t in plan_tables(plan)]
        bf16 = resolve_bf16(self.cfg.autocast_bf16)
        if self.show:
            tqdm.write(f"worker 0: {describe(bf16, self.cfg.autocast_bf16, False)}")
        self.dmp = shard(network, plan, device, self.cfg.embedding_optimizer, self.cfg.embedding_lr, pg,
                         autocast_bf16=bf16)
        if self.cfg.compile and self.show:
            tqdm.write("note: train.compile applies to single-process training; distributed workers run eager")
        self.optimizer = make_optimizer(self.dmp, self.cfg.lr, self.cfg.embedding_optimizer, self.cfg.embedding_lr,
                                        self.cfg.weight_decay)
        per_epoch = global_steps_per_epoch(spec.train_rows, self.cfg.batch_size) if self.global_order else \
            steps_per_epoch(spec.train_rows, self.cfg.batch_size, world_size)
        if per_epoch < 1:
            raise ValueError(f"{spec.train_rows} training rows give no full batch of {self.cfg.batch_size} "
                             f"over {world_size} workers")
        planned = min(self.cfg.max_steps, per_epoch * self.cfg.epochs) if self.cfg.max_steps else \
            per_epoch * self.cfg.epochs
        self.total_for_progress = self.cfg.max_steps or per_epoch * self.cfg.epochs
        self.state = TrainState(planned_steps=planned, steps_per_epoch=per_epoch, world_size=world_size,
                                plan=self.plan_rows)

    def _feed(self, train_shard: Any) -> Feed:
        """This rank's batches: its frame shard, its range of the file stream (train_shard None), or its Ray Data
        split (a DataIterator)."""
        cfg, stream = self.cfg, self.spec.stream
        place = Placement(cfg.batch_size, self.world_size, self.rank, cfg.seed)
        if stream is None:
            return FrameFeed(self.model, train_shard, place, self.global_order)
        if self.global_order:
            raise ValueError("data_order 'global' needs a training frame; file sources are read in the sharded order")
        if train_shard is None:
            return StreamFeed(self.model, stream, place, cfg.shuffle)
        return RayDataFeed(self.model, train_shard, place, stream.rows,
                           stream.options.shuffle_buffer if cfg.shuffle else 0)

    # checkpoints ---------------------------------------------------------------------------------
    def resume(self) -> None:
        """Continue from the sink's latest checkpoint, if any."""
        with self.sink.latest() as path:
            if path is None:
                return
            saved = load_sharded(path, self.dmp, self.optimizer)
        self.state = TrainState.from_dict(saved)
        self.state.resumes.append(self.state.step)
        self.state.plan = self.plan_rows
        self.state.world_size = self.world_size
        if self.show:
            tqdm.write(f"resumed from {path.name}: step {self.state.step}, epoch {self.state.epoch}, "
                       f"batch {self.state.batch}")

    def checkpoint_name(self) -> str:
        """The name the checkpoint of the current step gets (recorded in the state before it is written)."""
        return f"step_{self.state.step:08d}"

    def checkpoint(self, metrics: dict[str, Any]) -> str:
        """Collective: save a sharded checkpoint named after the step and report `metrics` with it."""
        name = self.checkpoint_name()
        manifest = self.spec.manifest
        state = self.state.to_dict()

        def write(path: Path) -> None:
            save_sharded(path, self.dmp, self.optimizer, manifest, state, run_files(manifest, self.spec.run_dir))

        self.sink.save(name, write, {"step": self.state.step, "epoch": self.state.epoch, **metrics})
        return name

    def _maybe_fail(self) -> None:
        """Fault drill: the last rank dies once, hard, when the step counter reaches `fail_once_at_step`.

        It first waits DRILL_DELAY_S, so a scheduler that collects reports periodically (Ray Train polls every
        2 s) has registered the last checkpoint, as it would have before a real crash between checkpoints.
        """
        at = self.dcfg.fail_once_at_step
        if at is None or self.state.step != at or self.rank != self.world_size - 1:
            return
        marker = Path(self.spec.run_dir) / FAILURE_MARKER
        if marker.exists():
            return
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"rank {self.rank} killed at step {at}\n")
        time.sleep(DRILL_DELAY_S)
        os._exit(17)

    # training ------------------------------------------------------------------------------------
    def epoch_batches(self, epoch: int, start: int) -> Iterator[int]:
        """The indices of the batches left in `epoch` (from `start`), with a train pipeline over this rank's shard
        of them ready for `step`; the pipeline is detached when the epoch ends."""
        stop = self.epoch_stop()
        self.batches = self.feed.batches(epoch, start, stop)
        self.pipeline = TrainPipelineSparseDist(self.dmp, self.optimizer, self.device, execute_all_batches=True)
        self.dmp.train()
        try:
            yield from range(start, stop)
        finally:
            self.pipeline.detach()

    def step(self, index: int) -> torch.Tensor:
        """One global step (this rank's local batch) through the train pipeline."""
        self._maybe_fail()
        self.dmp.module.progress = min(1.0, self.state.step / self.total_for_progress)
        loss, _ = self.pipeline.progress(self.batches)
        return loss

    def after_step(self, st: TrainState) -> None:
        """Ledger the batch just applied; checkpoint every `checkpoint_every` steps (not at the epoch's end)."""
        st.record_batch(st.epoch, st.batch - 1)
        every = self.dcfg.checkpoint_every
        if every and st.step % every == 0 and st.batch < self.epoch_stop():
            self.loop.fold()
            self.checkpoint({})

    def epoch_stop(self) -> int:
        """The batch index the current epoch ends at (earlier when max_steps cuts it); the same all epoch long."""
        st, cfg = self.state, self.cfg
        return min(st.steps_per_epoch, st.batch + cfg.max_steps - st.step) if cfg.max_steps else st.steps_per_epoch

    def after_epoch(self, st: TrainState, record: dict[str, Any]) -> None:
        """Checkpoint the epoch's end (naming it the best checkpoint when the epoch is the best so far)."""
        stream = self.spec.stream
        if stream is not None and not (self.cfg.max_steps and st.step >= self.cfg.max_steps):
            record["rows"] = epoch_accounting(stream, st.steps_per_epoch * self.cfg.batch_size, self.cfg.batch_size,
                                              self.world_size)
        name = self.checkpoint_name()
        if st.best_epoch == record["epoch"]:
            st.best_checkpoint = name
        self.checkpoint({"epoch": record["epoch"], "loss": record["loss"],
                         "valid_mean_auc": record.get("valid_mean_auc"), "best_epoch": st.best_epoch,
                         "finished": st.finished})

    def validation(self) -> Validation | None:
        """Collective: mean AUC of every task on the union of the ranks' validation shards."""
        tasks, batch = self.model.tasks, self.cfg.eval_batch_size
        stream = self.spec.valid_stream
        if stream is not None:
            def streamed() -> Metrics:
                tables, real, _ = stream.eval_windows(self.rank, self.world_size)
                return evaluate_sharded(self.dmp, (self.model.encode_table(t) for t in tables), real, tasks, batch)

            return Validation(streamed)
        if self.valid is None:
            return None
        valid = self.valid
        return Validation(lambda: evaluate_sharded(self.dmp, [valid], self.valid_real, tasks, batch))

    def run(self) -> TrainState:
        """Resume if a checkpoint exists, then train until done; returns the final state."""
        self.resume()
        settings = LoopSettings(self.cfg.epochs, self.cfg.patience, self.cfg.max_steps, self.state.steps_per_epoch,
                                progress=self.show, suffix=f", {self.world_size} workers")
        self.loop = EpochLoop(settings, validation=self.validation(), state=self.state,
                              size=lambda _: self.cfg.batch_size, reduce=_rank_mean, after_step=self.after_step,
                              after_epoch=self.after_epoch)
        self.loop.run(self.epoch_batches, self.step)
        check_ledger(self.state)
        return self.state


def run_worker(spec: WorkerSpec, rank: int, world_size: int, train_shard: pd.DataFrame,
               valid_shard: pd.DataFrame | None, sink: CheckpointSink, device: torch.device,
               progress: bool = True, local_world_size: int | None = None) -> dict[str, Any]:
    """Train this rank's part of the job (inside an initialized process group); returns the final train state.

    `local_world_size` (workers per machine) shapes the planner's topology; default: all on one machine."""
    quiet_worker_logs()
    threads = spec.train.threads or spec.dist.threads_per_worker
    if threads:
        torch.set_num_threads(threads)
    worker = _Worker(spec, rank, world_size, train_shard, valid_shard, sink, device, progress, local_world_size)
    return worker.run().to_dict()

