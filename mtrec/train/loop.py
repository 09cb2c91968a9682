"""The training loop: fused FBGEMM embedding optimizer + dense Adam, per-epoch validation, early stopping."""

from __future__ import annotations

import dataclasses
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from mtrec.data.batches import Batch, EncodedFrame, user_groups
from mtrec.data.io import read_frame
from mtrec.data.stream import (REJECTED, FileSource, FileStream, ReadCounts, RejectedRows, StreamOptions,
                               epoch_accounting, is_dataset, is_file_source, take_options)
from mtrec.data.validation import require_both_classes
from mtrec.data.vocab import FitOptions, Vocabularies, hash_report_lines
from mtrec.errors import DataError
from mtrec.model import MultiTaskModel
from mtrec.models.inputs import bf16_autocast, network_inputs
from mtrec.recipe import FlatnessConfig, TrainConfig
from mtrec.train.fused import fuse_embeddings, fused_parameter_ids, unfuse_embeddings
from mtrec.train.execution import AdaptiveStep, describe, resolve_bf16
from mtrec.train.epochs import BestState, EpochLoop, LoopSettings, LoopState, Validation
from mtrec.train.flatness import SharpnessAwareStep
from mtrec.train.metrics import Metrics, task_metrics
from mtrec.train.optim import dense_adam


DEFAULT_RUNS = "~/mtrec_runs"


@dataclass
class TrainResult:
    """What a training run did: per-epoch history, the epoch kept, time and throughput."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_valid: Metrics = field(default_factory=dict)
    seconds: float = 0.0
    steps: int = 0
    examples: int = 0
    execution: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)  # file sources: rows read, good and rejected per split

    @property
    def examples_per_second(self) -> float:
        """Training examples processed per second of training-step time."""
        train_seconds = sum(h["seconds"] for h in self.history) or 1e-9
        return self.examples / train_seconds


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a run is repeatable."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def evaluate_encoded(model: MultiTaskModel, encoded: EncodedFrame, batch_size: int = 8192) -> Metrics:
    """Per-task AUC / logloss / calibration of the model on an encoded, labelled frame (GAUC when the schema names a
    user column and the frame has it)."""
    probs = model.predict_array(encoded, batch_size)
    return task_metrics(encoded.labels_array(), probs, model.tasks, groups=encoded.groups)


def make_step(network: torch.nn.Module, optimizer: torch.optim.Optimizer, progress: Callable[[], float],
              autocast_bf16: bool = False, compile: bool | None = False, planned_steps: int = 0,
              show: bool = False) -> Callable[[Batch], torch.Tensor]:
    """One training step on a batch (forward, backward with the fused table update, dense optimizer step).

    `compile` True runs the dense part (encoder + target) through torch.compile, None lets the run decide by
    measurement (`execution.AdaptiveStep`: compiled when a run of `planned_steps` is long enough and compiled steps
    are faster); the embedding lookup stays eager (FBGEMM fused kernels), and the network's modules are not
    replaced, so state dicts keep their keys.
    """

    def build(dense: Callable[..., torch.Tensor] | None) -> Callable[[Batch], torch.Tensor]:
        def step(batch: Batch) -> torch.Tensor:
            inputs = network_inputs(batch, labels=True, progress=progress())
            with bf16_autocast(autocast_bf16):
                if dense is not None:
                    loss = dense(network.embedding(inputs), inputs["labels"], inputs["progress"])
                else:
                    loss = network(inputs)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return loss.detach()

        return step

    eager = build(None)
    if compile is False:
        return eager
    compilable = getattr(network, "decoder", None) is None
    if compile and not compilable:
        raise ValueError("train.compile supports encoder-only networks")
    return AdaptiveStep(eager, (lambda: build(_compiled_dense(network))) if compilable else None, compile,
                        planned_steps, show)


def _compiled_dense(network: torch.nn.Module) -> Callable[..., torch.Tensor]:
    """torch.compile of encoder + target as one function of (embedding output, labels, progress)."""
    if getattr(network, "decoder", None) is not None:
        raise ValueError("train.compile supports encoder-only networks")

    def dense(emb: torch.Tensor, labels: torch.Tensor, progress: torch.Tensor) -> torch.Tensor:
        batch = {"labels": labels, "progress": progress}
        return network.target(network.encoder(emb, batch), batch)["loss"]

    return torch.compile(dense, dynamic=False)


def resolve_config(model: MultiTaskModel, **overrides: Any) -> TrainConfig:
    """The recipe's train settings with explicit keyword overrides (None means: keep the recipe's). Precision and
    compile stay as configured: the process that trains resolves them for its own CPU (train/execution.py)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(given) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise TypeError(f"train(): unknown option(s) {', '.join(sorted(unknown))}")
    cfg = dataclasses.replace(model.recipe.train, **given)
    cfg.validate()
    return cfg


def train(model: MultiTaskModel, train_df: pd.DataFrame | str | Sequence[str], valid: Any = None,
          progress: bool = True, **options: Any) -> TrainResult:
    """Train `model` on a frame or on Parquet/CSV files (a path, directory, glob or list: streamed, never one
    frame); options override the recipe's train settings (epochs, batch_size, seed, lr...) and set the stream's
    reading (StreamOptions: shuffle_buffer, on_bad_rows, ...) and the vocabulary fit (FitOptions: min_count, ...)."""
    stream_options, options = take_options(StreamOptions, options)
    fit_options, options = take_options(FitOptions, options)
    cfg = resolve_config(model, **options)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    if is_file_source(train_df) or is_file_source(valid) or is_dataset(train_df):
        return train_stream(model, train_df, valid, cfg, stream_options, fit_options, progress=progress)
    train_frame = read_frame(train_df)
    if not model.is_built:
        model.build_network(fit_options.fit(train_frame, model.schema), seed=cfg.seed)
    encoded = model.encode(train_frame)
    require_both_classes(encoded.labels_array(), model.tasks)
    encoded_valid = model.encode(read_frame(valid)) if valid is not None else None
    return fit_encoded(model, encoded, encoded_valid, cfg, progress=progress)


def fit_encoded(model: MultiTaskModel, encoded: EncodedFrame, encoded_valid: EncodedFrame | None, cfg: TrainConfig,
                progress: bool = True) -> TrainResult:
    """The loop itself, over already-encoded frames (also used by benchmarks to time training alone)."""

    drop = len(encoded) >= cfg.batch_size  # fewer rows than one batch: train on them all (as the new-task fits)

    def batches(epoch: int, _start: int) -> Iterable[Batch]:
        return encoded.batches(cfg.batch_size, shuffle=cfg.shuffle, seed=cfg.seed + epoch, drop_last=drop)

    return run_loop(model, batches, max(1, len(encoded) // cfg.batch_size),
                    frame_validation(model, encoded_valid, cfg.eval_batch_size), cfg, progress)


def require_steps(steps: int, rows: int, batch_size: int, workers: int = 1) -> None:
    """DataError when an epoch would run no step (fewer good rows than one full batch): never a silently
    untrained model."""
    if steps < 1:
        over = f" over {workers} workers" if workers > 1 else ""
        raise DataError(f"{rows:,} training rows are fewer than one batch of {batch_size}{over}: no step would run; "
                        f"pass a batch_size of at most {max(1, rows // workers)} (--batch-size) or more rows")


def run_loop(model: MultiTaskModel, batches: Callable[[int, int], Iterable[Batch]], steps_per_epoch: int,
             validation: Validation | None, cfg: TrainConfig, progress: bool = True,
             after_epoch: Callable[[LoopState, dict[str, Any]], None] | None = None) -> TrainResult:
    """Fuse the tables, run the epoch loop over `batches(epoch, start)` with the training step, unfuse. With
    `cfg.flatness` the step is sharpness-aware (eager: no compile) and the model records the flatness statistics."""
    network = model.require_network()
    bf16 = resolve_bf16(cfg.autocast_bf16)
    flatness = FlatnessConfig.from_value(cfg.flatness)
    if progress:
        tqdm.write(f"training {model.name}: {describe(bf16, cfg.autocast_bf16, cfg.compile)}")
    start = time.perf_counter()
    total_steps = cfg.max_steps or steps_per_epoch * cfg.epochs
    fuse_embeddings(network, cfg.embedding_optimizer, cfg.embedding_lr)
    try:
        loop = EpochLoop(LoopSettings(cfg.epochs, cfg.patience, cfg.max_steps, steps_per_epoch, progress=progress),
                         validation=validation, keeper=BestState(network), after_epoch=after_epoch)
        optimizer = dense_optimizer(network, cfg)
        share = (lambda: min(1.0, loop.state.step / total_steps))
        step = make_step(network, optimizer, progress=share, autocast_bf16=bf16,
                         compile=False if flatness else cfg.compile, planned_steps=total_steps, show=progress)
        if flatness is not None:
            step = SharpnessAwareStep(network, optimizer, dense_parameters(network), flatness, share, step, bf16)

        def training(epoch: int, first: int) -> Iterable[Batch]:
            network.train()
            return batches(epoch, first)

        state = loop.run(training, step)
    finally:
        unfuse_embeddings(network)
    network.eval()
    execution = {"autocast_bf16": bf16, "compile": False if flatness else cfg.compile,
                 **(step.decisions if isinstance(step, AdaptiveStep) else {})}
    if isinstance(step, SharpnessAwareStep):
        model.set_flatness(step.stats.means())
        execution["flatness"] = {**dataclasses.asdict(flatness), "sharpness_aware_steps": step.stats.steps}
    return TrainResult(history=state.history, best_epoch=state.best_epoch, best_valid=state.best_valid,
                       seconds=time.perf_counter() - start, steps=state.step, examples=state.examples,
                       execution=execution)


def train_stream(model: MultiTaskModel, train_source: Any, valid: Any, cfg: TrainConfig, options: StreamOptions,
                 fit: FitOptions, progress: bool = True) -> TrainResult:
    """Train in this process on files read as a stream (mtrec.data.stream): scan (validate, count, fit the
    vocabularies if the model has none), then epochs over windows of the stream, each encoded when it is read."""
    data = scan_sources(model, train_source, valid, cfg, options, fit, progress)
    if not model.is_built:
        model.build_network(data.vocabs, seed=cfg.seed)
    stream, valid_stream = data.train, data.valid
    require_steps(stream.steps(cfg.batch_size), stream.rows, cfg.batch_size)

    def batches(epoch: int, first: int) -> Iterator[Batch]:
        counts[epoch] = ReadCounts()
        for table, skip in stream.windows(cfg.batch_size, cfg.seed, epoch, start=first, shuffle=cfg.shuffle,
                                          counts=counts[epoch]):
            yield from islice(model.encode_table(table).batches(cfg.batch_size, drop_last=True), skip, None)

    def account(state: LoopState, record: dict[str, Any]) -> None:
        """Check the epoch's rows: what the reader put into batches was trained, the rest is rejected or unused."""
        if cfg.max_steps and state.step >= cfg.max_steps:
            return  # an epoch cut short by max_steps leaves rows unread
        read = counts[record["epoch"]]
        if read.rows != state.epoch_examples:
            raise RuntimeError(f"row accounting: the reader gave {read.rows:,} rows, {state.epoch_examples:,} trained")
        record["rows"] = epoch_accounting(stream, state.epoch_examples, cfg.batch_size)

    counts: dict[int, ReadCounts] = {}
    validation = None
    if valid_stream is not None:
        validation = Validation(lambda: evaluate_stream(model, valid_stream, cfg.eval_batch_size))
    elif data.valid_frame is not None:
        validation = frame_validation(model, model.encode(data.valid_frame), cfg.eval_batch_size)
    result = run_loop(model, batches, max(1, stream.steps(cfg.batch_size)), validation, cfg, progress,
                      after_epoch=account)
    result.data = data.summary()
    return result


@dataclass
class ScannedData:
    """The scanned training stream, the validation stream (or frame), where rejected rows went and the vocabularies
    (the model's own, or fitted by the scan)."""

    train: FileStream
    valid: FileStream | None
    valid_frame: pd.DataFrame | None
    rejected_path: str | None
    vocabs: Vocabularies

    def summary(self) -> dict[str, Any]:
        """Rows and rejections of both splits (what a TrainResult reports under `data`)."""
        out: dict[str, Any] = {"train": {"rows": self.train.raw_rows, "good": self.train.rows,
                                         "rejected": self.train.rejected, "files": len(self.train.files)},
                               "rejected_path": self.rejected_path}
        if self.valid is not None:
            out["valid"] = {"rows": self.valid.raw_rows, "good": self.valid.rows, "rejected": self.valid.rejected,
                            "files": len(self.valid.files)}
        return out


def scan_sources(model: MultiTaskModel, train_source: Any, valid: Any, cfg: TrainConfig, options: StreamOptions,
                 fit: FitOptions, progress: bool = True, run_dir: str | Path | None = None) -> ScannedData:
    """Scan the training files (fitting vocabularies when the model has none; the caller builds the network) and
    the validation files; with on_bad_rows="skip" bad rows go to rejected.parquet (in `run_dir`, or the path
    StreamOptions names) and a summary line is printed."""
    if not (is_file_source(train_source) or is_dataset(train_source)):
        raise DataError("with validation files, give the training data as files too (or both as frames)")
    rejected = None
    if options.on_bad_rows == "skip":
        path = options.rejected_path or Path(run_dir or default_run_dir(model)) / REJECTED
        rejected = RejectedRows(path)
    fitter = None if model.is_built else fit.fitter(model.schema)
    try:
        if is_dataset(train_source):
            from mtrec.data.ray_source import DatasetStream

            stream: Any = DatasetStream.scan(train_source, model.schema, model.tasks, options, fitter)
        else:
            stream = FileSource.of(train_source).scan(model.schema, model.tasks, options, fitter, rejected, "train",
                                                      progress)
        valid_stream = FileSource.of(valid).scan(model.schema, model.tasks, options, None, rejected, "valid",
                                                 progress) if is_file_source(valid) else None
    finally:
        if rejected is not None:
            rejected.close()
    valid_frame = read_frame(valid) if valid is not None and valid_stream is None else None
    vocabs = model.vocabs if fitter is None else fitter.finish()
    if fitter is not None and progress:
        for line in hash_report_lines(vocabs):
            tqdm.write(line)
    data = ScannedData(stream, valid_stream, valid_frame, str(rejected.path) if rejected is not None else None,
                       vocabs)
    if rejected is not None and progress:
        tqdm.write(f"rows: train {stream.raw_rows:,} read = {stream.rows:,} good + {stream.rejected:,} rejected"
                   + (f"; valid {valid_stream.raw_rows:,} = {valid_stream.rows:,} + {valid_stream.rejected:,}"
                      if valid_stream is not None else "") + f"; rejected rows: {rejected.path}")
    return data


def default_run_dir(model: MultiTaskModel) -> Path:
    """Where an in-process run keeps what it writes besides the model (rejected rows): ~/mtrec_runs/<run>."""
    return Path(DEFAULT_RUNS).expanduser() / f"mtrec-{model.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def evaluate_stream(model: MultiTaskModel, stream: FileStream, batch_size: int = 8192) -> Metrics:
    """Per-task AUC / logloss of the model on a scanned stream, read window by window (probabilities and labels of
    every row are kept: a few floats a row)."""
    probs, labels, users = [], [], []
    tables, _, _ = stream.eval_windows()
    user = model.schema.user
    for table in tables:
        encoded = model.encode_table(table)
        probs.append(model.predict_array(encoded, batch_size))
        labels.append(encoded.labels_array())
        if user is not None and user in table.column_names:
            users.append(table.column(user).to_numpy(zero_copy_only=False))
    groups = user_groups(np.concatenate(users)) if users and len(users) == len(labels) else None
    return task_metrics(np.concatenate(labels), np.concatenate(probs), model.tasks, groups=groups)


def dense_parameters(network: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The trainable parameters the fused embedding modules do not update themselves, by name."""
    skip = fused_parameter_ids(network)
    return {n: p for n, p in network.named_parameters() if p.requires_grad and id(p) not in skip}


def dense_optimizer(network: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam over the dense parameters (dense_parameters)."""
    return dense_adam(list(dense_parameters(network).values()), lr=cfg.lr, weight_decay=cfg.weight_decay)


def frame_validation(model: MultiTaskModel, encoded_valid: EncodedFrame | None, batch_size: int) -> Validation | None:
    """Early stopping on the mean AUC of the model's tasks on an encoded validation frame (None without one)."""
    if encoded_valid is None:
        return None
    return Validation(lambda: evaluate_encoded(model, encoded_valid, batch_size))
