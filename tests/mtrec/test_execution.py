"""Precision and compile chosen by the machine: bf16 only with native bf16, compile only when measured to win."""

from __future__ import annotations

import warnings

import pytest
import torch

import mtrec
import mtrec.models  # noqa: F401  (registers the encoders the recipes name)
from mtrec.recipe import CONFIG_DIR, load_recipe
from mtrec.train.execution import AdaptiveStep, cpu_has_bf16, describe, resolve_bf16


def test_bf16_follows_the_cpu_unless_configured():
    assert resolve_bf16(None) is cpu_has_bf16()
    assert resolve_bf16(False) is False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert resolve_bf16(True) is cpu_has_bf16()
    assert bool(caught) is (not cpu_has_bf16())
    line = describe(resolve_bf16(None), None, None)
    assert line.startswith("precision: bf16" if cpu_has_bf16() else "precision: fp32") and "compile: auto" in line


def test_recipes_leave_precision_and_compile_to_the_machine():
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        train = load_recipe(path).train
        assert train.autocast_bf16 is None and train.compile is None, path.name


def test_training_records_its_choice_and_a_short_run_stays_eager(adult):
    model = mtrec.build_model("mptrec", schema=adult.schema, tasks=adult.tasks, dataset="adult")
    result = mtrec.train(model, adult.train.head(4096), epochs=2, batch_size=256, seed=0, progress=False)
    assert result.execution["autocast_bf16"] is cpu_has_bf16()
    assert result.execution["compile"].startswith("eager (run estimated")
    assert result.execution["estimated_eager_seconds"] < 60


def _linear_step(model: torch.nn.Module, opt: torch.optim.Optimizer):
    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        loss = torch.nn.functional.mse_loss(model(batch[0]), batch[1])
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.detach()
    return step


@pytest.mark.parametrize("mode", [True, None])
def test_a_failing_compile_falls_back_to_eager_with_the_same_result(mode):
    torch.manual_seed(0)
    batches = [(torch.randn(32, 4), torch.randn(32, 1)) for _ in range(30)]
    reference, candidate = torch.nn.Linear(4, 1), torch.nn.Linear(4, 1)
    candidate.load_state_dict(reference.state_dict())
    eager = _linear_step(reference, torch.optim.SGD(reference.parameters(), lr=0.1))
    expected = [eager(b) for b in batches]

    def broken_compile():
        def compiled(_batch):
            raise torch._dynamo.exc.Unsupported("not compilable here")
        return compiled

    step = AdaptiveStep(_linear_step(candidate, torch.optim.SGD(candidate.parameters(), lr=0.1)), broken_compile,
                        mode, planned_steps=10**9)
    with pytest.warns(UserWarning, match="torch.compile failed"):
        got = [step(b) for b in batches]
    assert step.decisions["compile"].startswith("eager (compile failed")
    assert all(torch.equal(a, b) for a, b in zip(expected, got))
    assert torch.equal(candidate.weight, reference.weight)
