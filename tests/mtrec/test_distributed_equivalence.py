"""Sharded == unsharded on 2 CPU ranks (gloo): one training step under every sharding type gives the parameters of
the single-process step; DCP checkpoints load exactly into an unsharded network, another plan and 1 worker.

All 2-rank work runs in one spawned process group (imports dominate the cost); the parent compares.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

import mtrec
from mtrec.data.vocab import Vocabularies
from mtrec.recipe import load_recipe
from mtrec.train.optim import dense_adam

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled")

TYPES = ["data_parallel", "table_wise", "column_wise", "row_wise"]
GLOBAL_BATCH = 512
SEED = 0


def _model(data: mtrec.datasets.Dataset, autocast: bool) -> mtrec.MultiTaskModel:
    """adult mptrec with 8-dim tables (so column_wise splits each table over both ranks)."""
    recipe = load_recipe("mptrec", dataset="adult")
    recipe.model["embedding"]["parts"][0]["embedding_dim"] = 8
    recipe.train.autocast_bf16 = autocast
    model = mtrec.build_model("mptrec", schema=data.schema, tasks=data.tasks, recipe=recipe)
    model.build_network(Vocabularies.fit(data.train, model.schema), seed=SEED)
    return model


def _rows(rank: int, world: int) -> np.ndarray:
    local = GLOBAL_BATCH // world
    return np.arange(rank * local, (rank + 1) * local)


def _train_one_step(data, kind: str, rank: int, world: int, pg, optimizer: str, autocast: bool):
    """Shard a fresh network with `kind`, take one step on this rank's half of the global batch."""
    from torchrec.distributed.train_pipeline import TrainPipelineSparseDist

    from mtrec.distributed.planner import build_plan, plan_tables
    from mtrec.distributed.wrap import make_optimizer, shard

    cpu = torch.device("cpu")
    model = _model(data, autocast)
    network = model.require_network()
    plan = build_plan(network, world, sharding=kind, batch_size=GLOBAL_BATCH // world, pg=pg)
    dmp = shard(network, plan, cpu, optimizer, 0.1, pg, autocast_bf16=autocast)
    opt = make_optimizer(dmp, 3e-3, optimizer, 0.1, dense_optimizer="sgd" if optimizer == "sgd" else "adam")
    batch = model.encode(data.train.iloc[_rows(rank, world)]).take(np.arange(GLOBAL_BATCH // world))
    dmp.train()
    TrainPipelineSparseDist(dmp, opt, cpu).progress(iter([batch]))
    return model, dmp, opt, [[t.table, t.sharding_type, list(t.ranks)] for t in plan_tables(plan)]


def _rank_main(rank: int, world: int, tmp: str) -> None:
    """One rank: one SGD step under every sharding type (saved), then an Adagrad+Adam row_wise step resharded
    (weights and optimizer state) into a table_wise model."""
    torch.set_num_threads(1)
    faulthandler.enable(open(f"{tmp}/fault-{rank}.txt", "w"))  # a SIGABRT shows where
    from mtrec.distributed.checkpoint import load_sharded, model_manifest, run_files, save_sharded
    from mtrec.distributed.env import local_process_group
    from mtrec.distributed.planner import build_plan
    from mtrec.distributed.wrap import make_optimizer, shard

    def save(path: str, dmp, opt, model, state) -> None:
        """save_sharded with the model's vocabulary file (each rank writes its copy in its own run directory)."""
        run_dir = Path(f"{tmp}/run-{rank}")
        manifest = model_manifest(model, run_dir=run_dir)
        save_sharded(path, dmp, opt, manifest, state, run_files(manifest, run_dir))

    data = mtrec.datasets.load("adult")
    plans = {}
    with local_process_group(f"{tmp}/store", rank, world) as pg:
        for kind in TYPES:
            model, dmp, opt, plans[kind] = _train_one_step(data, kind, rank, world, pg, "sgd", False)
            save(f"{tmp}/{kind}", dmp, opt, model, {"step": 1})
        model, dmp, opt, _ = _train_one_step(data, "row_wise", rank, world, pg, "adagrad", False)
        save(f"{tmp}/row_wise_adagrad", dmp, opt, model, {"step": 1})
        model = _model(data, False)
        network = model.require_network()
        plan = build_plan(network, world, sharding="table_wise", batch_size=GLOBAL_BATCH // world, pg=pg)
        dmp = shard(network, plan, torch.device("cpu"), "adagrad", 0.1, pg)
        opt = make_optimizer(dmp, 3e-3, "adagrad", 0.1)
        state = load_sharded(f"{tmp}/row_wise_adagrad", dmp, opt)
        save(f"{tmp}/resharded", dmp, opt, model, state)
        if rank == 0:
            Path(f"{tmp}/plans.json").write_text(json.dumps(plans))


def _single_step(data: mtrec.datasets.Dataset, optimizer: str, autocast: bool) -> dict[str, torch.Tensor]:
    """The single-process reference: mtrec's own training step on the whole global batch."""
    from mtrec.train.fused import fuse_embeddings, fused_parameter_ids, unfuse_embeddings
    from mtrec.train.loop import make_step

    model = _model(data, autocast)
    network = model.require_network()
    fuse_embeddings(network, optimizer, 0.1)
    skip = fused_parameter_ids(network)
    dense = [p for p in network.parameters() if p.requires_grad and id(p) not in skip]
    opt = torch.optim.SGD(dense, lr=3e-3) if optimizer == "sgd" else dense_adam(dense, lr=3e-3)
    step = make_step(network, opt, progress=lambda: 0.0, autocast_bf16=autocast)
    network.train()
    step(model.encode(data.train.iloc[:GLOBAL_BATCH]).take(np.arange(GLOBAL_BATCH)))
    unfuse_embeddings(network)
    return {k: v.detach().clone() for k, v in network.state_dict().items()}


@pytest.fixture(scope="module")
def two_rank_run(adult):
    """Run the 2-rank script and yield its output directory. A rank killed by a signal (once in CI, on a loaded
    machine, rank 1 died of SIGABRT in gloo and never here in 20 runs) gets one more attempt in a fresh directory,
    the first kill's Python stacks given in a warning; a second kill fails the tests with them."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with contextlib.ExitStack() as dirs:
        for attempt in (1, 2):
            tmp = dirs.enter_context(tempfile.TemporaryDirectory(prefix="mtrec-dist-test-"))
            try:
                mp.start_processes(_rank_main, args=(2, tmp), nprocs=2, start_method="spawn")
                break
            except mp.ProcessExitedException as exc:
                faults = {p.name: p.read_text() for p in sorted(Path(tmp).glob("fault-*.txt"))}
                if attempt == 2:
                    raise AssertionError(f"{exc} twice; Python stacks at the signal: {faults}") from exc
                warnings.warn(f"2-rank run: {exc}; retrying once. Python stacks at the signal: {faults}",
                              stacklevel=1)
        yield Path(tmp)


def _unsharded(data: mtrec.datasets.Dataset, path: Path) -> dict[str, torch.Tensor]:
    from mtrec.distributed.checkpoint import load_network_weights

    network = _model(data, False).require_network()
    load_network_weights(path, network)
    return network.state_dict()


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def test_plans_use_the_requested_type_on_both_ranks(two_rank_run):
    plans = json.loads((two_rank_run / "plans.json").read_text())
    for kind in TYPES:
        assert {entry[1] for entry in plans[kind]} == {kind}
    assert all(entry[2] == [0, 1] for entry in plans["row_wise"] + plans["column_wise"])
    assert {r for entry in plans["table_wise"] for r in entry[2]} == {0, 1}


@pytest.mark.parametrize("kind", TYPES)
def test_one_step_sharded_equals_unsharded(adult, two_rank_run, kind):
    reference = _single_step(adult, "sgd", False)
    initial = _model(adult, False).require_network().state_dict()
    sharded = _unsharded(adult, two_rank_run / kind)
    moved = _max_diff(reference, initial)
    assert moved > 1e-4, "the step must move the parameters for the comparison to mean anything"
    assert _max_diff(sharded, reference) <= 1e-6 * max(1.0, moved) + 1e-7


def test_dcp_checkpoint_loads_into_unsharded_model_via_mtrec_load(adult, two_rank_run):
    loaded = mtrec.load(two_rank_run / "table_wise")
    assert isinstance(loaded, mtrec.MultiTaskModel)
    direct = _unsharded(adult, two_rank_run / "table_wise")
    assert all(torch.equal(loaded.require_network().state_dict()[k], v) for k, v in direct.items())
    probs = loaded.predict(adult.test.head(100))
    assert list(probs.columns) == adult.tasks and probs.notna().all().all()


def _raw_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a DCP checkpoint at its global shape (weights and optimizer state), read in one process."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    metadata = dcp.FileSystemReader(str(path)).read_metadata().state_dict_metadata
    tensors = {k: torch.empty(m.size, dtype=m.properties.dtype) for k, m in metadata.items()
               if isinstance(m, TensorStorageMetadata)}
    dcp.load(tensors, checkpoint_id=str(path), no_dist=True)
    return tensors


def test_reshard_to_another_plan_keeps_weights_and_optimizer_state(two_rank_run):
    saved, resharded = _raw_tensors(two_rank_run / "row_wise_adagrad"), _raw_tensors(two_rank_run / "resharded")
    assert saved.keys() == resharded.keys()
    assert any(".momentum1" in k for k in saved) and any(k.endswith("exp_avg_sq") for k in saved)
    assert all(torch.equal(saved[k], resharded[k]) for k in saved)


def test_load_into_one_worker_is_exact(adult, two_rank_run):
    from mtrec.distributed.checkpoint import load_sharded, model_manifest, save_sharded
    from mtrec.distributed.env import local_process_group
    from mtrec.distributed.planner import build_plan
    from mtrec.distributed.wrap import make_optimizer, shard

    with local_process_group(two_rank_run / "store-1", 0, 1):
        model = _model(adult, False)
        network = model.require_network()
        dmp = shard(network, build_plan(network, 1, sharding="table_wise"), torch.device("cpu"), "adagrad", 0.1)
        opt = make_optimizer(dmp, 3e-3, "adagrad", 0.1)
        load_sharded(two_rank_run / "row_wise_adagrad", dmp, opt)
        save_sharded(two_rank_run / "one_worker", dmp, opt, model_manifest(model), {})
    saved, one = _raw_tensors(two_rank_run / "row_wise_adagrad"), _raw_tensors(two_rank_run / "one_worker")
    assert saved.keys() == one.keys() and all(torch.equal(saved[k], one[k]) for k in saved)
