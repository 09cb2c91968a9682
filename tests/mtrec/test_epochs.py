"""The one epoch loop on a stream of batches: learns, stops early on the validation score, keeps the best epoch's
weights, and a run resumed from its saved state ends exactly where an uninterrupted one does."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from mtrec.train.epochs import BestState, EpochLoop, LoopSettings, LoopState, Validation
from mtrec.train.metrics import task_metrics

NUMERIC = ["age", "fnlwgt", "capital-gain", "capital-loss", "hours-per-week"]


def _tensors(frame: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
    x = np.log1p(frame[NUMERIC].to_numpy(np.float64))
    return torch.tensor((x - x.mean(0)) / x.std(0), dtype=torch.float32), \
        torch.tensor(frame["income"].to_numpy(), dtype=torch.float32)


class _Run:
    """A logistic regression of adult's income on its numeric columns, trained by the loop from a generator."""

    def __init__(self, adult, seed: int = 0, lr: float = 0.05) -> None:
        torch.manual_seed(seed)
        self.x, self.y = _tensors(adult.train.head(6000))
        self.vx, self.vy = _tensors(adult.valid.head(2000))
        self.model = nn.Linear(len(NUMERIC), 1)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr)
        self.scores: list[float] = []

    def stream(self, epoch: int, start: int):
        """Batches of 200 rows in a seeded order, as a generator of unknown length (a stream)."""
        order = torch.from_numpy(np.random.default_rng(epoch).permutation(len(self.y)))
        for i in range(start, len(order) // 200):
            idx = order[i * 200:(i + 1) * 200]
            yield self.x[idx], self.y[idx]

    def step(self, batch) -> torch.Tensor:
        x, y = batch
        loss = F.binary_cross_entropy_with_logits(self.model(x).squeeze(1), y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def validate(self) -> dict[str, dict[str, float]]:
        with torch.no_grad():
            probs = torch.sigmoid(self.model(self.vx)).numpy()
        metrics = task_metrics(self.vy.numpy().reshape(-1, 1), probs, ["income"])
        self.scores.append(metrics["income"]["auc"])
        return metrics

    def loop(self, epochs: int, patience: int = 5, state: LoopState | None = None, after_step=None) -> EpochLoop:
        return EpochLoop(LoopSettings(epochs, patience), validation=Validation(self.validate),
                         keeper=BestState(self.model), state=state, size=lambda b: len(b[1]), after_step=after_step)


class _Crash(Exception):
    pass


def test_a_stream_trains_and_the_best_epoch_is_kept(adult):
    run = _Run(adult, lr=2.0)
    state = run.loop(8, patience=2).run(run.stream, run.step)
    assert len(state.history) == len(run.scores) and state.step == 30 * len(state.history)
    assert state.examples == 200 * state.step and state.best_score == max(run.scores) > 0.75
    assert state.best_epoch == int(np.argmax(run.scores)) + 1 and state.history[-1]["valid_mean_auc"] == run.scores[-1]
    assert state.finished and (state.stale >= 2 or len(state.history) == 8)
    assert run.validate()["income"]["auc"] == state.best_score  # the kept weights are the best epoch's


def test_resumed_run_ends_where_an_uninterrupted_one_does(adult):
    whole = _Run(adult)
    done = whole.loop(3).run(whole.stream, whole.step)
    first, saved = _Run(adult), {}

    def checkpoint_then_crash(state: LoopState) -> None:
        if state.step == 45:  # mid-epoch 2, as a distributed worker's checkpoint_every would save it
            loop.fold()
            saved.update(state=state.to_dict(), model=first.model.state_dict(),
                         optimizer=first.optimizer.state_dict(), best=loop.keeper.state)
            raise _Crash

    loop = first.loop(3, after_step=checkpoint_then_crash)
    try:
        loop.run(first.stream, first.step)
    except _Crash:
        pass
    second = _Run(adult)
    second.model.load_state_dict(saved["model"])
    second.optimizer.load_state_dict(saved["optimizer"])
    resumed = second.loop(3, state=LoopState.from_dict(saved["state"]))
    resumed.keeper.state = saved["best"]
    state = resumed.run(second.stream, second.step)
    assert (saved["state"]["epoch"], saved["state"]["batch"]) == (2, 15) and state.step == done.step == 90
    assert [h["epoch"] for h in state.history] == [1, 2, 3] and state.best_epoch == done.best_epoch
    # the epoch loss is summed in two segments instead of one: equal up to float32 rounding
    assert np.allclose([h["loss"] for h in state.history], [h["loss"] for h in done.history], rtol=1e-6, atol=0)
    assert torch.equal(second.model.weight, whole.model.weight) and torch.equal(second.model.bias, whole.model.bias)
