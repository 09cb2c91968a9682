"""The one epoch loop: steps over any iterable of batches, validation after each epoch, early stopping, the best
epoch's state kept, a tqdm bar per epoch and a line per epoch.

What varies between its users is passed in: the batches of an epoch (`batches(epoch, start)`: an encoded frame's
shuffled slices, cached representations, a worker's shard, or a stream), the step (a training step, a head step,
a pipeline step), the validation (per-task metrics and the score early stopping maximizes: the mean AUC of the
model's tasks, or one new task's AUC), how the best epoch's state is kept (a copy in memory, or the name of a
checkpoint) and, for distributed runs, how a loss is averaged over ranks and what happens after each step and
epoch (ledger, checkpoints). The loop's progress lives in a plain `LoopState`, so a run saved mid-epoch resumes
exactly where it stopped.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import torch
from torch import nn
from tqdm.auto import tqdm

from mtrec.train.metrics import Metrics, mean_auc, per_task_line

B = TypeVar("B")
LOSS_POSTFIX_EVERY = 50  # steps between refreshes of the bar's loss / examples-per-second
LOSS_FALLBACK = "valid loss"  # what early stopping uses when a validation AUC is undefined (one class)


@dataclass(frozen=True)
class Validation:
    """How an epoch is scored: `evaluate()` gives per-task metrics, `score(metrics)` the number early stopping
    maximizes. An epoch's record gets the metrics under "valid" and the score under `key`; the epoch line shows it
    as `label`."""

    evaluate: Callable[[], Metrics]
    score: Callable[[Metrics], float] = mean_auc
    key: str = "valid_mean_auc"
    label: str = "valid mean AUC"


class BestKeeper(Protocol):
    """Keeps the state of the best epoch so far and puts it back at the end."""

    def save(self) -> None:
        """The current epoch is the best so far."""

    def restore(self) -> None:
        """Training is over: make the best epoch's state current."""


class BestState:
    """A BestKeeper holding a copy of a module's state dict in memory."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.state: dict[str, Any] | None = None

    def save(self) -> None:
        """Copy the module's current state."""
        self.state = copy.deepcopy(self.module.state_dict())

    def restore(self) -> None:
        """Load the copied state (nothing happens when no epoch was ever validated)."""
        if self.state is not None:
            self.module.load_state_dict(self.state)


@dataclass
class LoopState:
    """Where training stands: plain data, saved with a distributed checkpoint and restored on resume."""

    step: int = 0
    epoch: int = 1
    batch: int = 0
    examples: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float | None = None
    best_valid: Metrics = field(default_factory=dict)
    stale: int = 0
    finished: bool = False
    epoch_loss_sum: float = 0.0
    epoch_loss_count: int = 0
    epoch_examples: int = 0
    epoch_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoopState:
        """Rebuild from `to_dict` output (unknown keys ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


S = TypeVar("S", bound=LoopState)


@dataclass
class LoopSettings:
    """How long the loop runs and what it shows."""

    epochs: int
    patience: int
    max_steps: int | None = None
    steps_per_epoch: int | None = None  # the bar's total (None for a stream of unknown length)
    desc: str = "epoch"
    progress: bool = False
    suffix: str = ""  # appended to each epoch line, e.g. ", 2 workers"


class EpochLoop(Generic[B, S]):
    """Runs epochs of `step(batch)` over `batches(epoch, start)` until `epochs`, `max_steps` or early stopping.

    `size(batch)` counts a batch's examples; `reduce(loss_sum)` turns this rank's sum of step losses into the
    global one (identity in one process); `after_step(state)` and `after_epoch(state, record)` let a distributed
    worker keep its ledger and write checkpoints (`fold()` first folds the pending losses into the state)."""

    def __init__(self, settings: LoopSettings, validation: Validation | None = None, keeper: BestKeeper | None = None,
                 state: S | None = None, size: Callable[[B], int] = len, reduce: Callable[[float], float] = float,
                 after_step: Callable[[S], None] | None = None,
                 after_epoch: Callable[[S, dict[str, Any]], None] | None = None) -> None:
        self.settings, self.validation, self.keeper = settings, validation, keeper
        self.state: S = state if state is not None else LoopState()  # type: ignore[assignment]
        self.size, self.reduce = size, reduce
        self.after_step, self.after_epoch = after_step, after_epoch
        self._pending: list[torch.Tensor] = []
        self._segment_start = time.perf_counter()
        self._warned = False

    def run(self, batches: Callable[[int, int], Iterable[B]], step: Callable[[B], torch.Tensor]) -> S:
        """Train until done; the best epoch's state is restored through the keeper. Returns the state."""
        while not self.state.finished:
            self.run_epoch(batches(self.state.epoch, self.state.batch), step)
        if self.keeper is not None:
            self.keeper.restore()
        return self.state

    def run_epoch(self, batches: Iterable[B], step: Callable[[B], torch.Tensor]) -> None:
        """The rest of the current epoch (from `state.batch`), then its validation and bookkeeping."""
        cfg, st = self.settings, self.state
        if st.batch == 0:
            st.epoch_loss_sum, st.epoch_loss_count, st.epoch_examples, st.epoch_seconds = 0.0, 0, 0, 0.0
        bar = tqdm(total=cfg.steps_per_epoch, initial=st.batch, desc=f"{cfg.desc} {st.epoch}/{cfg.epochs}",
                   disable=not cfg.progress, leave=False, unit="batch")
        self._pending, self._segment_start = [], time.perf_counter()
        capped = False
        try:
            for batch in batches:
                self._pending.append(step(batch))
                st.step += 1
                st.batch += 1
                st.examples += (n := self.size(batch))
                st.epoch_examples += n
                bar.update(1)
                if cfg.progress and st.step % LOSS_POSTFIX_EVERY == 0:
                    self._show_rate(bar)
                if self.after_step is not None:
                    self.after_step(st)
                if cfg.max_steps and st.step >= cfg.max_steps:
                    capped = True
                    break
        finally:
            bar.close()
            close = getattr(batches, "close", None)
            if callable(close):
                close()
        self.fold()
        self.end_epoch(capped)

    def fold(self) -> None:
        """Add the pending step losses (reduced over ranks) and their time to the epoch's running totals."""
        st = self.state
        st.epoch_loss_sum += self.reduce(float(torch.stack(self._pending).sum()) if self._pending else 0.0)
        st.epoch_loss_count += len(self._pending)
        st.epoch_seconds += time.perf_counter() - self._segment_start
        self._pending, self._segment_start = [], time.perf_counter()

    def end_epoch(self, capped: bool) -> None:
        """Validate, update early stopping and the kept state, record and show the epoch, decide whether to go on."""
        cfg, st = self.settings, self.state
        record: dict[str, Any] = {"epoch": st.epoch,
                                  "loss": st.epoch_loss_sum / st.epoch_loss_count if st.epoch_loss_count
                                  else float("nan"),
                                  "seconds": st.epoch_seconds, "steps": st.step}
        if self.validation is not None:
            metrics = self.validation.evaluate()
            score = self.validation.score(metrics)
            if math.isnan(score):
                score = self._loss_score(metrics)
                record["early_stopping"] = LOSS_FALLBACK
            record["valid"], record[self.validation.key] = metrics, score
            if st.best_score is None or score > st.best_score:
                st.best_score, st.stale, st.best_epoch, st.best_valid = score, 0, st.epoch, metrics
                if self.keeper is not None:
                    self.keeper.save()
            else:
                st.stale += 1
        else:
            st.best_epoch = st.epoch
        st.history.append(record)
        if cfg.progress:
            shown = f", {self.validation.label} {record[self.validation.key]:.4f}{per_task_line(record['valid'])}" \
                if self.validation else ""
            if LOSS_FALLBACK in record.values():
                shown = f", {LOSS_FALLBACK} {-record[self.validation.key]:.4f}{per_task_line(record['valid'])}"
            rate = st.epoch_examples / max(st.epoch_seconds, 1e-9)
            tqdm.write(f"{cfg.desc} {st.epoch}: loss {record['loss']:.4f}{shown} ({rate:,.0f} examples/s, "
                       f"{st.epoch_seconds:.1f} s{cfg.suffix})")
        st.finished = capped or st.epoch >= cfg.epochs or (self.validation is not None and st.stale >= cfg.patience)
        if not st.finished:
            st.epoch, st.batch = st.epoch + 1, 0
        if self.after_epoch is not None:
            self.after_epoch(st, record)

    def _loss_score(self, metrics: Metrics) -> float:
        """The score when an AUC is undefined (a task's validation labels have one class): minus the mean
        validation log loss, so early stopping still means something; warns once."""
        if not self._warned:
            one_class = [t for t, m in metrics.items() if math.isnan(m.get("auc", math.nan))]
            warnings.warn(f"validation labels of {', '.join(map(repr, one_class))} have one class: AUC is undefined, "
                          "so early stopping uses the validation loss", UserWarning, stacklevel=2)
            self._warned = True
        losses = [m["logloss"] for m in metrics.values() if "logloss" in m]
        return -float(sum(losses) / len(losses)) if losses else -math.inf

    def _show_rate(self, bar: tqdm) -> None:
        """Refresh the bar's recent loss and examples per second."""
        recent = self._pending[-LOSS_POSTFIX_EVERY:]
        elapsed = self.state.epoch_seconds + time.perf_counter() - self._segment_start
        bar.set_postfix(loss=f"{float(torch.stack(recent).mean()):.4f}",
                        ex_s=f"{self.state.epoch_examples / max(elapsed, 1e-9):,.0f}")
