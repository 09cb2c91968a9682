"""Continual task addition: the task_embedding head, held-back synthetic tasks on ignored features, remove_task."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import mtrec
from mtrec.data.datasets.synthetic import SyntheticSpec
from mtrec.models.task_embedding_head import TaskEmbeddingHead
from mtrec.train.metrics import auc

FAST = {"epochs": 2, "progress": False}
HIDDEN = {"rows": 30_000, "tables": 5, "cardinality": 200, "tasks": 2, "multi_valued": 1, "dense": 2,
          "new_tasks": 2, "hidden_tables": 2, "hidden_tasks": 1, "hidden_weight": 0.8, "seed": 3}
SMALL_MPTREC = ["--model.encoder.expert_hidden", "[64, 32]", "--model.encoder.tower_hidden", "[32]"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def hidden_data():
    """Synthetic data whose last held-back task leans on two tables the pre-training tasks ignore."""
    return mtrec.datasets.load("synthetic", **HIDDEN)


@pytest.fixture(scope="module")
def hidden_model(hidden_data):
    """A small mptrec trained on the synthetic pre-training tasks."""
    model = mtrec.build_model("mptrec", schema=hidden_data.schema, tasks=hidden_data.tasks, overrides=SMALL_MPTREC)
    mtrec.train(model, hidden_data.train, valid=hidden_data.valid, epochs=3, seed=0, progress=False)
    return model


def test_synthetic_hidden_tables_feed_only_the_hidden_tasks():
    base = SyntheticSpec(tables=5, cardinality=200, tasks=2, new_tasks=2, block_rows=1000, seed=3)
    spec = SyntheticSpec(tables=5, cardinality=200, tasks=2, new_tasks=2, hidden_tables=2, hidden_tasks=1,
                         block_rows=1000, seed=3)
    assert spec.new_task_names == ["task2", "task3"] and spec.hidden_task_names == ["task3"]
    assert spec.hidden_names == ["s2", "s3"]
    a, b = base.frame(0, 3000), spec.frame(0, 3000)
    assert a[["s0", "s1", "s2", "s3", "d0"]].equals(b[["s0", "s1", "s2", "s3", "d0"]])
    logits = spec.logits(0, 3000)
    # without weight on the hidden block only the hidden task's logit changes
    moved = SyntheticSpec(tables=5, cardinality=200, tasks=2, new_tasks=2, hidden_tables=2, hidden_tasks=1,
                          block_rows=1000, seed=3, hidden_weight=0.0)
    assert np.allclose(moved.logits(0, 3000)[:, :3], logits[:, :3])
    assert not np.allclose(moved.logits(0, 3000)[:, 3], logits[:, 3])
    one_task = SyntheticSpec(tables=5, cardinality=200, tasks=2, seed=3, block_rows=1000)
    assert one_task.new_task_names == ["task2"]
    with pytest.raises(ValueError, match="hidden_tables"):
        SyntheticSpec(tables=3, multi_valued=1, hidden_tables=3)
    with pytest.raises(ValueError, match="hidden_tasks"):
        SyntheticSpec(new_tasks=1, hidden_tables=1, hidden_tasks=2)


def test_task_embedding_keeps_old_tasks_and_predicts_what_it_trained(model, frames):
    train, valid, test = frames
    old = model.predict(test).to_numpy()
    result = mtrec.add_task(model, "education", train, valid=valid, method="task_embedding", **FAST)
    head = model.network.task_heads.heads["education"]
    assert isinstance(head, TaskEmbeddingHead) and result.method == "task_embedding"
    now = model.predict(test).to_numpy()
    assert np.array_equal(now[:, :2], old)
    # the valid AUC measured on cached representations + raw batches is the model's own valid AUC
    assert result.valid_auc == pytest.approx(auc(valid["education"].to_numpy(), model.predict(valid)["education"]),
                                             abs=1e-12)
    tables = head.table.weight.numel()
    assert result.trainable_params == sum(p.numel() for p in head.parameters()) and tables > 0
    assert result.trainable_share < 0.15


def test_task_embedding_save_load_and_side_features(model, frames, tmp_path):
    train, valid, test = frames
    mtrec.add_task(model, "education", train, valid=valid, method="task_embedding", side_features=["occupation"],
                   embedding_dim=2, **FAST)
    head = model.network.task_heads.heads["education"]
    assert head.features == ("occupation",) and head.table.weight.shape[1] == 2
    before = model.predict(test).to_numpy()
    loaded = mtrec.load(mtrec.save(model, tmp_path / "ckpt"))
    assert np.array_equal(loaded.predict(test).to_numpy(), before)
    with pytest.raises(mtrec.DataError, match="side_features"):
        mtrec.add_task(model, "professional", train, method="task_embedding", side_features=["nope"], **FAST)


def test_task_embedding_beats_prompt_on_a_task_needing_ignored_features(hidden_data, hidden_model):
    task = hidden_data.new_tasks[-1]
    test = hidden_data.test
    old = hidden_model.predict(test).to_numpy()
    aucs = {}
    for method in ("prompt", "task_embedding"):
        model = copy.deepcopy(hidden_model)
        mtrec.add_task(model, task, hidden_data.train, valid=hidden_data.valid, method=method, epochs=6,
                       progress=False)
        pred = model.predict(test)
        assert np.array_equal(pred.to_numpy()[:, :2], old)
        aucs[method] = auc(test[task].to_numpy(), pred[task].to_numpy())
    assert aucs["task_embedding"] > aucs["prompt"] + 0.03, aucs


def test_remove_task_keeps_the_others_through_save_load(model, frames, tmp_path):
    train, valid, test = frames
    base = model.predict(test).to_numpy()
    mtrec.add_task(model, "education", train, valid=valid, **FAST)
    mtrec.add_task(model, "professional", train, valid=valid, method="task_embedding", **FAST)
    mtrec.add_task(model, "female", train, valid=valid, method="tower", **FAST)
    full = model.predict(test)
    removed = mtrec.remove_task(model, "professional")
    assert removed["method"] == "task_embedding" and removed["task"] == "professional"
    assert model.tasks == ["income", "married", "education", "female"]
    assert list(model.network.target.tasks) == model.tasks and len(model.network.target.weights) == 4
    now = model.predict(test)
    assert np.array_equal(now.to_numpy(), full[model.tasks].to_numpy())
    loaded = mtrec.load(mtrec.save(model, tmp_path / "a"))
    assert np.array_equal(loaded.predict(test).to_numpy(), now.to_numpy())
    # a removed name can be added again; removing every added task gives back the pre-training predictions
    mtrec.add_task(loaded, "professional", train, valid=valid, **FAST)
    for name in ("education", "female", "professional"):
        mtrec.remove_task(loaded, name)
    assert loaded.tasks == ["income", "married"] and loaded.extensions == []
    assert np.array_equal(loaded.predict(test).to_numpy(), base)
    assert np.array_equal(mtrec.load(mtrec.save(loaded, tmp_path / "b")).predict(test).to_numpy(), base)
    # labelled forwards (training path) still line up logits and loss weights
    mtrec.evaluate(loaded, test)


@pytest.mark.parametrize("name, message", [("income", "pre-training task"), ("nope", "not a task")])
def test_remove_task_refuses_what_was_not_added(model, name, message):
    with pytest.raises(mtrec.DataError, match=message):
        mtrec.remove_task(model, name)
    assert model.tasks == ["income", "married"]


def test_long_sequence_of_additions_and_removals(model, frames, tmp_path):
    """Eight operations mixing methods; after each one every remaining task keeps its scores, also reloaded."""
    train, valid, test = frames
    ops = [("add", "education", "prompt"), ("add", "professional", "finetune"), ("add", "female", "task_embedding"),
           ("remove", "education", None), ("add", "education", "tower"), ("remove", "female", None),
           ("add", "female", "pecl"), ("remove", "professional", None)]
    scores = model.predict(test)
    for step, (op, name, method) in enumerate(ops):
        if op == "add":
            moves_backbone = method in ("finetune", "pecl")
            mtrec.add_task(model, name, train, valid=valid, method=method, epochs=1, progress=False)
            now = model.predict(test)
            if not moves_backbone:
                assert np.array_equal(now[list(scores.columns)].to_numpy(), scores.to_numpy()), step
        else:
            mtrec.remove_task(model, name)
            now = model.predict(test)
            assert np.array_equal(now.to_numpy(), scores[model.tasks].to_numpy()), step
        scores = now
        assert list(scores.columns) == model.tasks
    assert model.tasks == ["income", "married", "education", "female"]
    loaded = mtrec.load(mtrec.save(model, tmp_path / "seq"))
    assert np.array_equal(loaded.predict(test).to_numpy(), scores.to_numpy())


def test_cli_remove_task(trained_adult_mptrec, frames, tmp_path, capsys):
    from mtrec.cli import main

    train, valid, test = frames
    model = copy.deepcopy(trained_adult_mptrec[0])
    mtrec.add_task(model, "education", train, valid=valid, **FAST)
    src = mtrec.save(model, tmp_path / "src")
    main(["remove-task", "--checkpoint", str(src), "--task", "education", "--out", str(tmp_path / "out")])
    assert "removed task 'education'" in capsys.readouterr().out
    out = mtrec.load(tmp_path / "out")
    assert out.tasks == ["income", "married"]
    assert np.array_equal(out.predict(test).to_numpy(), trained_adult_mptrec[0].predict(test).to_numpy())
    with pytest.raises(SystemExit) as exc:
        main(["remove-task", "--checkpoint", str(src), "--task", "income", "--out", str(tmp_path / "bad")])
    assert exc.value.code == 2 and "pre-training task" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    # in place only when asked
    with pytest.raises(SystemExit) as exc:
        main(["remove-task", "--checkpoint", str(src), "--task", "education", "--out", str(src)])
    assert exc.value.code == 2 and mtrec.load(src).tasks == ["income", "married", "education"]
    main(["remove-task", "--checkpoint", str(src), "--task", "education", "--out", str(src), "--overwrite"])
    assert mtrec.load(src).tasks == ["income", "married"]


def test_a_task_embedding_checkpoint_loads_in_a_fresh_process(model, frames, tmp_path):
    import subprocess
    import sys

    train, valid, test = frames
    mtrec.add_task(model, "education", train, valid=valid, method="task_embedding", **FAST)
    path = mtrec.save(model, tmp_path / "te")
    test.head(50).to_parquet(tmp_path / "rows.parquet")
    np.save(tmp_path / "want.npy", model.predict(test.head(50)).to_numpy())
    code = ("import numpy as np, pandas as pd, mtrec; m = mtrec.load(%r); "
            "p = m.predict(pd.read_parquet(%r)).to_numpy(); assert np.array_equal(p, np.load(%r)), 'differs'"
            % (str(path), str(tmp_path / "rows.parquet"), str(tmp_path / "want.npy")))
    subprocess.run([sys.executable, "-c", code], check=True)
