"""Sharding plans (every type, overrides, GPU auto rule, printing), distributed settings and job configs, the data
split and order, the step ledger, and the job wrappers' argument handling. No processes are started here."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

import mtrec
from mtrec.data.vocab import Vocabularies
from mtrec.distributed import SHARDING_TYPES, DistributedConfig, EBCSharder, build_plan, format_plan, plan_tables
from mtrec.distributed.config import load_job_config
from mtrec.distributed.data import epoch_order, local_batch_size, padded_positions, shard_positions, steps_per_epoch
from mtrec.distributed.loop import TrainState, check_ledger
from mtrec.distributed.planner import embedding_tables, resolve_table_types
from mtrec.recipe import CONFIG_DIR, load_recipe
from pretrain_stack.errors import ConfigError


@pytest.fixture(scope="module")
def network(adult):
    recipe = load_recipe("mptrec", dataset="adult")
    recipe.model["embedding"]["parts"][0]["embedding_dim"] = 8
    model = mtrec.build_model("mptrec", schema=adult.schema, tasks=adult.tasks, recipe=recipe)
    return model.build_network(Vocabularies.fit(adult.train, model.schema))


@pytest.mark.parametrize("kind", ["data_parallel", "table_wise", "column_wise", "row_wise", "table_column_wise"])
def test_plan_for_each_sharding_type(network, kind):
    tables = embedding_tables(network)
    entries = plan_tables(build_plan(network, 2, sharding=kind, batch_size=128))
    assert {e.table for e in entries} == set(tables) and {e.sharding_type for e in entries} == {kind}
    for e in entries:
        config = tables[e.table]
        if kind == "data_parallel":
            assert e.compute_kernel == "dense" and e.shard_sizes == ()
        elif kind == "row_wise":
            assert e.ranks == (0, 1) and e.rows == config.num_embeddings
            assert all(c == config.embedding_dim for _, c in e.shard_sizes)
        elif kind in ("column_wise", "table_column_wise"):
            assert e.ranks == (0, 1) and [c for _, c in e.shard_sizes] == [4, 4] and e.dim == 8
        else:
            assert len(e.ranks) == 1 and e.shard_sizes == ((config.num_embeddings, config.embedding_dim),)
    if kind == "table_wise":
        assert {e.ranks[0] for e in entries} == {0, 1}


def test_per_table_overrides_by_table_and_feature_name(network):
    plan = build_plan(network, 2, sharding="table_wise", tables={"t_age": "row_wise", "occupation": "data_parallel"})
    kinds = {e.table: e.sharding_type for e in plan_tables(plan)}
    assert kinds["t_age"] == "row_wise" and kinds["t_occupation"] == "data_parallel"
    assert {k for t, k in kinds.items() if t not in ("t_age", "t_occupation")} == {"table_wise"}
    text = format_plan(plan, 2)
    assert "t_age" in text and "row_wise" in text and "0,1" in text and "all" in text


def test_bad_overrides_name_the_key(network):
    with pytest.raises(ConfigError, match="distributed.tables.nope"):
        build_plan(network, 2, tables={"nope": "row_wise"})
    with pytest.raises(ConfigError, match="unknown sharding type 'diagonal'"):
        build_plan(network, 2, sharding="diagonal")


def test_auto_on_gpu_rows_wise_shards_the_large_tables(network):
    tables = embedding_tables(network)
    chosen = resolve_table_types(tables, device_type="cuda", large_table_rows=40)
    assert {t for t, k in chosen.items() if k == "row_wise"} == {t for t, c in tables.items() if c.num_embeddings >= 40}
    assert set(resolve_table_types(tables, device_type="cpu", large_table_rows=40).values()) == {None}


def test_sharder_offers_row_wise_on_cpu():
    offered = EBCSharder().sharding_types("cpu")
    assert "row_wise" in offered and set(offered) <= set(SHARDING_TYPES)


def test_distributed_config_validation_and_job_config(tmp_path):
    with pytest.raises(ConfigError, match="distributed.workers"):
        DistributedConfig(workers=0).validate()
    with pytest.raises(ConfigError, match="distributed.tables.t_age"):
        DistributedConfig(tables={"t_age": "sideways"}).validate()
    data = yaml.safe_load((CONFIG_DIR / "mptrec_adult.yaml").read_text())
    data["distributed"] = {"workers": 3, "sharding": "row_wise", "tables": {"t_age": "table_wise"}}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    recipe, dist = load_job_config(path, ["--distributed.workers", "4", "--train.lr", "0.01"])
    assert dist.workers == 4 and dist.sharding == "row_wise" and dist.tables == {"t_age": "table_wise"}
    assert recipe.train.lr == 0.01 and recipe.model["encoder"]["name"] == "mptrec"
    recipe, dist = load_job_config(CONFIG_DIR / "mptrec_adult.yaml")
    assert dist == DistributedConfig()


def test_rows_split_evenly_and_orders_are_reproducible():
    parts = [shard_positions(10, r, 3) for r in range(3)]
    assert sorted(np.concatenate(parts).tolist()) == list(range(10))
    assert steps_per_epoch(34189, 2048, 2) == 16 and local_batch_size(2048, 2) == 1024
    with pytest.raises(ValueError, match="does not split over 3 workers"):
        local_batch_size(2048, 3)
    assert np.array_equal(epoch_order(100, 0, 3, 0, 1), np.random.default_rng(3).permutation(100))
    assert not np.array_equal(epoch_order(100, 0, 3, 0, 2), epoch_order(100, 0, 3, 1, 2))
    assert padded_positions(3, 5).tolist() == [0, 1, 2, 2, 2]


def test_ledger_accepts_exact_tiling_and_rejects_gaps_and_repeats():
    state = TrainState(step=7, steps_per_epoch=4)
    for epoch, batch in [(1, 0), (1, 1), (1, 2), (1, 3), (2, 0), (2, 1), (2, 2)]:
        state.record_batch(epoch, batch)
    assert state.ledger == [[1, 0, 4], [2, 0, 3]]
    check_ledger(state)
    with pytest.raises(RuntimeError, match="skips or repeats"):
        check_ledger(TrainState(step=5, steps_per_epoch=4, ledger=[[1, 0, 2], [1, 1, 4]]))
    with pytest.raises(RuntimeError, match="skips or repeats"):
        check_ledger(TrainState(step=6, steps_per_epoch=4, ledger=[[1, 0, 3], [2, 0, 3]]))
    with pytest.raises(RuntimeError, match="optimizer steps"):
        check_ledger(TrainState(step=5, steps_per_epoch=4, ledger=[[1, 0, 4]]))


def test_job_wrappers_parse_configs_and_fail_clearly(tmp_path):
    from jobs import parse_with_config
    from jobs.add_task import build_parser as add_task_parser
    from jobs.benchmark import suite_argv
    from jobs.train import _model_and_dataset, build_parser

    cfg = tmp_path / "add.yaml"
    cfg.write_text("task: education\ndataset: adult\noptions: {epochs: 2}\n")
    args = parse_with_config(add_task_parser(), ["--config", str(cfg), "--method", "tower"])
    assert (args.task, args.dataset, args.method, args.options) == ("education", "adult", "tower", {"epochs": 2})
    cfg.write_text("tsk: education\n")
    with pytest.raises(SystemExit):
        parse_with_config(add_task_parser(), ["--config", str(cfg)])
    assert _model_and_dataset("mtrec/configs/mptrec_adult.yaml", None, None) == ("mptrec", "adult")
    assert build_parser().parse_args(["--config", "x.yaml", "--workers", "2"]).workers == 2
    assert suite_argv({"rows": 10, "quick": True, "types": ["a", "b"], "off": False}) == [
        "--rows", "10", "--quick", "--types", "a", "b"]


def test_cli_train_has_distributed_flags():
    from mtrec.cli import build_parser

    args = build_parser().parse_args(["train", "--dataset", "adult", "--workers", "2", "--address", "auto"])
    assert args.workers == 2 and args.address == "auto"
