"""Adding a task: frozen-backbone prompt tuning keeps old tasks bit-identical; baselines run; save/load; errors."""

from __future__ import annotations

import copy
import time

import numpy as np
import pandas as pd
import pytest
import torch

import mtrec
from mtrec.models.layers import BatchedLinear
from mtrec.tasks.cache import RepresentationCache
from mtrec.models.prompt import MPTRecPromptHead

FAST = {"epochs": 2, "progress": False}


pytestmark = pytest.mark.usefixtures("one_thread")


def frozen_state(model: mtrec.MultiTaskModel) -> dict[str, torch.Tensor]:
    """Clones of every tensor in the network's state_dict (added heads included)."""
    return {k: v.detach().clone() for k, v in model.network.state_dict().items()}


def assert_unchanged(model: mtrec.MultiTaskModel, before: dict[str, torch.Tensor]) -> None:
    """Every tensor in `before` is still in the network, bit for bit."""
    now = model.network.state_dict()
    for k, v in before.items():
        assert torch.equal(now[k], v), k


def encoder_layer_calls(model: mtrec.MultiTaskModel, frame: pd.DataFrame) -> int:
    """How many times the encoder's batched layers run while predicting `frame` (one batch)."""
    calls = []
    hooks = [m.register_forward_hook(lambda *_: calls.append(1)) for m in model.network.encoder.modules()
             if isinstance(m, BatchedLinear)]
    try:
        model.predict(frame, batch_size=len(frame))
    finally:
        for h in hooks:
            h.remove()
    return len(calls)


def test_prompt_adds_a_column_and_keeps_old_tasks_bit_identical(model, frames):
    train, valid, test = frames
    old = model.predict(test).to_numpy()
    calls = encoder_layer_calls(model, test)
    state = frozen_state(model)
    result = mtrec.add_task(model, "education", train, valid=valid, **FAST)
    assert result.method == "prompt" and result.task == "education"
    head = model.network.task_heads.heads["education"]
    assert isinstance(head, MPTRecPromptHead)
    assert result.trainable_params == sum(p.numel() for p in head.parameters())
    assert result.total_params == model.num_parameters()
    assert result.trainable_share <= 0.10
    assert result.seconds > 0 and 1 <= len(result.history) <= 2 and 0.7 < result.valid_auc <= 1.0
    assert {"epoch", "loss", "seconds", "valid_auc"} <= set(result.history[0])
    out = model.predict(test)
    assert list(out.columns) == ["income", "married", "education"]
    assert np.array_equal(out.to_numpy()[:, :2], old)
    assert encoder_layer_calls(model, test) == calls  # the head reuses the forward's representations
    assert_unchanged(model, state)
    metrics = mtrec.evaluate(model, test)
    assert set(metrics) == {"income", "married", "education"} and metrics["education"]["auc"] > 0.75


def test_no_gradient_reaches_the_frozen_backbone(model, frames):
    train, valid, _ = frames
    for p in model.network.parameters():
        p.grad = None
    mtrec.add_task(model, "education", train, valid=valid, **FAST)
    backbone = [p for n, p in model.network.named_parameters() if not n.startswith("task_heads.")]
    assert backbone and all(p.grad is None for p in backbone)


def test_cache_holds_no_graph_and_streaming_matches_memory(model, frames):
    train, _, _ = frames
    encoded = model.encode(train, tasks=["education"])
    keys, consts = MPTRecPromptHead.reads, MPTRecPromptHead.constants
    memory = RepresentationCache(model.network, encoded, keys, consts)
    streamed = RepresentationCache(model.network, encoded, keys, consts, chunk_rows=1500, max_bytes=0)
    assert memory.in_memory and not streamed.in_memory
    assert not any(t.requires_grad for t in memory.rows.values())
    for (a, la), (b, lb) in zip(memory.batches(512, shuffle=True, seed=3), streamed.batches(512, shuffle=True, seed=3)):
        assert torch.equal(la, lb)
        for k in (*keys, *consts):
            assert torch.allclose(a[k], b[k], atol=1e-5), k
    result = mtrec.add_task(model, "education", train, max_cache_bytes=0, chunk_rows=3000, **FAST)
    assert result.details["cache_in_memory"] is False


def test_sequential_additions_keep_every_earlier_task(model, frames):
    train, valid, test = frames
    before = model.predict(test).to_numpy()
    mtrec.add_task(model, "education", train, valid=valid, **FAST)
    first = model.predict(test).to_numpy()
    state = frozen_state(model)
    result = mtrec.add_task(model, "professional", train, valid=valid, method="tower", **FAST)
    second = model.predict(test).to_numpy()
    mtrec.add_task(model, "female", train, valid=valid, **FAST)
    third = model.predict(test).to_numpy()
    assert model.tasks == ["income", "married", "education", "professional", "female"]
    assert np.array_equal(first[:, :2], before)
    assert np.array_equal(second[:, :3], first) and np.array_equal(third[:, :4], second)
    assert_unchanged(model, state)
    tower = model.network.task_heads.heads["professional"]
    assert result.trainable_params == sum(p.numel() for p in tower.parameters())
    assert [e["task"] for e in model.extensions] == ["education", "professional", "female"]


def test_save_load_round_trips_added_tasks(model, frames, tmp_path):
    train, valid, test = frames
    mtrec.add_task(model, "education", train, valid=valid, **FAST)
    mtrec.add_task(model, "professional", train, valid=valid, method="tower", **FAST)
    again = mtrec.load(mtrec.save(model, tmp_path / "ckpt"))
    assert again.tasks == model.tasks and again.extensions == model.extensions
    assert np.array_equal(again.predict(test).to_numpy(), model.predict(test).to_numpy())
    assert mtrec.evaluate(again, test)["education"] == mtrec.evaluate(model, test)["education"]
    before = again.predict(test).to_numpy()
    mtrec.add_task(again, "female", train, **FAST)
    assert np.array_equal(again.predict(test).to_numpy()[:, :4], before)


@pytest.mark.parametrize("case", ["existing", "missing", "non_binary", "feature", "method", "option"])
def test_bad_requests_are_clear_errors_and_change_nothing(model, frames, case):
    train, valid, test = frames
    tasks, old = list(model.tasks), model.predict(test).to_numpy()
    state = frozen_state(model)
    bad = train.assign(education=train["education"].astype(float) * 2)
    requests = {
        "existing": (mtrec.DataError, "income", dict(train_df=train)),
        "missing": (mtrec.DataError, "education", dict(train_df=train.drop(columns=["education"]))),
        "non_binary": (mtrec.DataError, "education", dict(train_df=bad)),
        "feature": (mtrec.DataError, "occupation", dict(train_df=train)),
        "method": (ValueError, "education", dict(train_df=train, method="magic")),
        "option": (TypeError, "education", dict(train_df=train, temprature=3.0)),
    }
    error, name, kwargs = requests[case]
    with pytest.raises(error) as info:
        mtrec.add_task(model, name, progress=False, **kwargs)
    if error is mtrec.DataError:
        assert name in str(info.value) and info.value.column == name
    assert model.tasks == tasks and model.extensions == [] and not hasattr(model.network, "task_heads")
    assert np.array_equal(model.predict(test).to_numpy(), old)
    assert_unchanged(model, state)


def test_missing_label_in_valid_names_the_column(model, frames):
    train, valid, _ = frames
    with pytest.raises(mtrec.DataError, match="education"):
        mtrec.add_task(model, "education", train, valid=valid.drop(columns=["education"]), progress=False)
    assert model.tasks == ["income", "married"]


@pytest.mark.parametrize("method", ["finetune", "child_tuning", "pecl"])
def test_backbone_methods_run_and_count(model, frames, method):
    train, valid, test = frames
    backbone = {k: v.clone() for k, v in model.network.state_dict().items()}
    base_total = model.num_parameters()
    result = mtrec.add_task(model, "education", train, valid=valid, method=method, epochs=1, fisher_batches=4,
                            progress=False) if method != "finetune" else \
        mtrec.add_task(model, "education", train, valid=valid, method=method, epochs=1, progress=False)
    head = sum(p.numel() for p in model.network.task_heads.heads["education"].parameters())
    assert result.total_params == base_total + head
    changed = sum(int((model.network.state_dict()[k] != v).sum()) for k, v in backbone.items())
    if method == "finetune":
        assert result.trainable_params == result.total_params
    else:
        assert head < result.trainable_params < result.total_params
        assert 0 < changed <= result.trainable_params - head
    assert list(model.predict(test).columns) == ["income", "married", "education"]


def test_pecl_selects_fewer_than_child_tuning_and_moves_old_tasks_less(trained_adult_mptrec, frames):
    train, valid, test = frames
    old = trained_adult_mptrec[0].predict(test).to_numpy()
    drift = {}
    for method in ("child_tuning", "pecl"):
        m = copy.deepcopy(trained_adult_mptrec[0])
        res = mtrec.add_task(m, "education", train, valid=valid, method=method, epochs=1, fisher_batches=4,
                             progress=False)
        drift[method] = (np.abs(m.predict(test).to_numpy()[:, :2] - old).mean(), res.trainable_params)
    assert drift["pecl"][1] < drift["child_tuning"][1]
    assert drift["pecl"][0] < drift["child_tuning"][0]


def test_joint_retrains_from_scratch_with_every_task(model, frames):
    train, valid, test = frames
    result = mtrec.add_task(model, "education", train, valid=valid, method="joint", epochs=1, progress=False)
    assert result.trainable_params == result.total_params == model.num_parameters()
    assert model.tasks == ["income", "married", "education"] and model.extensions == []
    assert not hasattr(model.network, "task_heads") and len(result.history) == 1
    assert set(mtrec.evaluate(model, test)) == {"income", "married", "education"}


@pytest.mark.parametrize("backbone,kind", [("mmoe", "expert_gate"), ("ple", "expert_gate"), ("stem", "expert_gate"),
                                           ("single", "expert_gate"), ("shared_bottom", "tower")])
def test_prompt_on_other_backbones(adult, frames, backbone, kind):
    train, valid, test = frames
    model = mtrec.build_model(backbone, schema=adult.schema, tasks=adult.tasks, dataset="adult")
    mtrec.train(model, train, epochs=1, progress=False)
    old = model.predict(test).to_numpy()
    calls = encoder_layer_calls(model, test)
    result = mtrec.add_task(model, "education", train, valid=valid, **FAST)
    assert model.extensions[-1]["head"]["kind"] == kind and result.trainable_share < 0.15
    assert np.array_equal(model.predict(test).to_numpy()[:, :2], old)
    assert encoder_layer_calls(model, test) == calls


def test_tower_needs_a_shared_representation(adult, frames):
    train, _, _ = frames
    model = mtrec.build_model("single", schema=adult.schema, tasks=adult.tasks, dataset="adult")
    mtrec.train(model, train, epochs=1, progress=False)
    with pytest.raises(ValueError, match="shared representation"):
        mtrec.add_task(model, "education", train, method="tower", progress=False)
    assert model.tasks == ["income", "married"]


def test_mptrec_head_follows_the_design():
    head = MPTRecPromptHead(input_dim=40, repr_dim=128, tower_hidden=(32,))
    d, in_dim = 128, 40
    projection = in_dim * 64 + 64 + 64 * d + d + 2 * d
    assert sum(p.numel() for p in head.parameters()) == d + projection + in_dim * 2 + 2 + d * 32 + 32 + 33
    reps = {"gate_in": torch.randn(5, in_dim), "s": torch.randn(5, d), "r": torch.randn(5, 3, d),
            "prompts": torch.randn(3, d)}
    weights = head.attention(reps)
    assert weights.shape == (5, 3) and torch.allclose(weights.sum(-1), torch.ones(5))
    assert head.temperature == d / 4 and head(reps).shape == (5,)
    other = dict(reps, prompts=reps["prompts"].flip(0))
    assert not torch.equal(head(reps), head(other))


def test_cli_add_task(trained_adult_mptrec, frames, tmp_path, capsys):
    from mtrec.cli import main

    train, valid, test = frames
    ckpt = mtrec.save(trained_adult_mptrec[0], tmp_path / "base")
    for name, frame in (("train", train), ("valid", valid), ("test", test)):
        frame.to_parquet(tmp_path / f"{name}.parquet")
    main(["add-task", "--checkpoint", str(ckpt), "--task", "education", "--train", str(tmp_path / "train.parquet"),
          "--valid", str(tmp_path / "valid.parquet"), "--test", str(tmp_path / "test.parquet"), "--epochs", "1",
          "--option", "tower_hidden=[16]", "--out", str(tmp_path / "added")])
    assert "added task 'education' with prompt" in capsys.readouterr().out
    again = mtrec.load(tmp_path / "added")
    assert again.tasks == ["income", "married", "education"]
    assert again.extensions[0]["head"]["args"]["tower_hidden"] == [16]


@pytest.mark.slow
def test_adult_quality_target(adult):
    """Prompt education on one seed: test AUC >= 0.86, <= 10% trainable, old tasks bit-identical, and a regression
    guard on speed: >= 3x faster than the joint retrain (benchmarks.new_task measured 4.5x over 3 seeds; issue 16's
    10x target is not met, see the README's "Adding a task")."""
    model = mtrec.build_model("mptrec", schema=adult.schema, tasks=adult.tasks, dataset="adult")
    mtrec.train(model, adult.train, valid=adult.valid, seed=0, progress=False)
    old = model.predict(adult.test).to_numpy()
    joint_model = copy.deepcopy(model)
    prompt = mtrec.add_task(model, "education", adult.train, valid=adult.valid, progress=False)
    start = time.perf_counter()
    mtrec.add_task(joint_model, "education", adult.train, valid=adult.valid, method="joint", progress=False)
    joint_seconds = time.perf_counter() - start
    assert mtrec.evaluate(model, adult.test)["education"]["auc"] >= 0.86
    assert prompt.trainable_share <= 0.10 and joint_seconds >= 3 * prompt.seconds
    assert np.array_equal(model.predict(adult.test).to_numpy()[:, :2], old)
