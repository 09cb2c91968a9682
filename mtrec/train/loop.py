"""The training loop: fused FBGEMM embedding optimizer + dense Adam, per-epoch validation, early stopping."""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass, field
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from mtrec.data.batches import Batch, EncodedFrame
from mtrec.data.io import read_frame
from mtrec.data.vocab import Vocabularies
from mtrec.model import MultiTaskModel
from mtrec.models.inputs import bf16_autocast, network_inputs
from mtrec.recipe import TrainConfig
from mtrec.train.fused import fuse_embeddings, fused_parameter_ids, unfuse_embeddings
from mtrec.train.execution import AdaptiveStep, describe, resolve_bf16
from mtrec.train.epochs import BestState, EpochLoop, LoopSettings, Validation
from mtrec.train.metrics import Metrics, task_metrics
from mtrec.train.optim import dense_adam


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
    """Per-task AUC / logloss of the model on an encoded, labelled frame."""
    probs = model.predict_array(encoded, batch_size)
    return task_metrics(encoded.labels_array(), probs, model.tasks)


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


def train(model: MultiTaskModel, train_df: pd.DataFrame | str, valid: pd.DataFrame | str | None = None,
          progress: bool = True, **options: Any) -> TrainResult:
    """Train `model` on a frame; options override the recipe's train settings (epochs, batch_size, seed, lr...)."""
    cfg = resolve_config(model, **options)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    train_frame = read_frame(train_df)
    if not model.is_built:
        model.build_network(Vocabularies.fit(train_frame, model.schema), seed=cfg.seed)
    encoded = model.encode(train_frame)
    encoded_valid = model.encode(read_frame(valid)) if valid is not None else None
    return fit_encoded(model, encoded, encoded_valid, cfg, progress=progress)


def fit_encoded(model: MultiTaskModel, encoded: EncodedFrame, encoded_valid: EncodedFrame | None, cfg: TrainConfig,
                progress: bool = True) -> TrainResult:
    """The loop itself, over already-encoded frames (also used by benchmarks to time training alone)."""
    network = model.require_network()
    bf16 = resolve_bf16(cfg.autocast_bf16)
    if progress:
        tqdm.write(f"training {model.name}: {describe(bf16, cfg.autocast_bf16, cfg.compile)}")
    start = time.perf_counter()
    steps_per_epoch = max(1, len(encoded) // cfg.batch_size)
    total_steps = cfg.max_steps or steps_per_epoch * cfg.epochs
    fuse_embeddings(network, cfg.embedding_optimizer, cfg.embedding_lr)
    try:
        loop = EpochLoop(LoopSettings(cfg.epochs, cfg.patience, cfg.max_steps, steps_per_epoch, progress=progress),
                         validation=frame_validation(model, encoded_valid, cfg.eval_batch_size),
                         keeper=BestState(network))
        step = make_step(network, dense_optimizer(network, cfg), progress=lambda: min(1.0, loop.state.step / total_steps),
                         autocast_bf16=bf16, compile=cfg.compile, planned_steps=total_steps,
                         show=progress)

        def batches(epoch: int, _start: int) -> Iterable[Batch]:
            network.train()
            return encoded.batches(cfg.batch_size, shuffle=True, seed=cfg.seed + epoch, drop_last=True)

        state = loop.run(batches, step)
    finally:
        unfuse_embeddings(network)
    network.eval()
    execution = {"autocast_bf16": bf16, "compile": cfg.compile,
                 **(step.decisions if isinstance(step, AdaptiveStep) else {})}
    return TrainResult(history=state.history, best_epoch=state.best_epoch, best_valid=state.best_valid,
                       seconds=time.perf_counter() - start, steps=state.step, examples=state.examples,
                       execution=execution)


def dense_optimizer(network: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam over the trainable parameters the fused embedding modules do not update themselves."""
    skip = fused_parameter_ids(network)
    return dense_adam([p for p in network.parameters() if p.requires_grad and id(p) not in skip], lr=cfg.lr,
                      weight_decay=cfg.weight_decay)


def frame_validation(model: MultiTaskModel, encoded_valid: EncodedFrame | None, batch_size: int) -> Validation | None:
    """Early stopping on the mean AUC of the model's tasks on an encoded validation frame (None without one)."""
    if encoded_valid is None:
        return None
    return Validation(lambda: evaluate_encoded(model, encoded_valid, batch_size))
