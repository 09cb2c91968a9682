"""Distributed scaling on synthetic big tables: examples/s and peak memory per worker, 1 vs 2 workers, each sharding.

The model is the MPT-Rec network over `--tables` sparse features of `--rows` ids x `--dim` (default 8 x 1M x 64,
2 GiB of fp32 tables) plus 2 dense features, trained with mtrec.distributed's machinery: TorchRec planner + DMP,
TrainPipelineSparseDist, fused FBGEMM table optimizer (rowwise Adagrad by default) + Adam, gloo on CPU. Tables are
built on the meta device, so a worker only ever allocates its own shards. Ids per feature are Zipf(1.1) over the
table, like the synthetic dataset's. Each configuration runs as its own set of processes (FileStore rendezvous on
one machine); the report adds an analysis of how memory and throughput grow with N GPU workers.

    python -m benchmarks.scaling                      # 8 x 1M x 64, writes reports/bench/scaling.{json,md}
    python -m benchmarks.scaling --quick              # 8 x 100k x 32, a minute
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.multiprocessing as mp
from tqdm.auto import tqdm

from benchmarks.common import write_results

TYPES = ["data_parallel", "table_wise", "column_wise", "row_wise"]
MIB = 1 << 20


def _peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _network(cfg: dict[str, Any]) -> torch.nn.Module:
    """The MPT-Rec network over big meta-device tables."""
    import mtrec.models  # noqa: F401  (registers the mptrec components)
    import pretrain_stack

    model = {"embedding": {"combine": "concat", "parts": [
                 {"name": "sparse_features", "embedding_dim": cfg["dim"], "device": "meta"},
                 {"name": "dense_features"}]},
             "encoder": {"name": "mptrec", "expert_hidden": [256, 128], "tower_hidden": [64, 32],
                         "classifier_hidden": [64], "dropout": 0.0, "grl_gamma": 10.0},
             "target": {"name": "mptrec", "gen_coe": 0.1, "env_coe": 0.1, "l2": 0.0}}
    features = [{"name": f"s{i}", "num_embeddings": cfg["rows"]} for i in range(cfg["tables"])]
    torch.manual_seed(0)
    return pretrain_stack.build_model(model, features=features, num_dense=2, tasks=["task0", "task1"])


def _batches(cfg: dict[str, Any], local: int, rank: int, count: int) -> list[Any]:
    """`count` local batches of Zipf ids (one per feature per example), dense features and labels."""
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    from mtrec.data.batches import Batch

    rng = np.random.default_rng([cfg["seed"], rank])
    keys = [f"s{i}" for i in range(cfg["tables"])]
    out = []
    for _ in range(count):
        ids = (rng.zipf(1.1, local * len(keys)) - 1) % cfg["rows"]
        kjt = KeyedJaggedTensor(keys=keys, values=torch.from_numpy(ids.astype(np.int64)),
                                lengths=torch.ones(local * len(keys), dtype=torch.int32))
        dense = torch.from_numpy(rng.standard_normal((local, 2)).astype(np.float32))
        labels = torch.from_numpy((rng.random((local, 2)) < 0.3).astype(np.float32))
        out.append(Batch(kjt, dense, labels))
    return out


def _local_bytes(model: torch.nn.Module, optimizer: Any) -> dict[str, float]:
    """MiB this rank holds in table shards, in their optimizer state, and in dense parameters."""
    from torch.distributed._shard.sharded_tensor import ShardedTensor

    def size(t: Any) -> int:
        if isinstance(t, ShardedTensor):
            return sum(s.tensor.numel() * s.tensor.element_size() for s in t.local_shards())
        return t.numel() * t.element_size() if isinstance(t, torch.Tensor) else 0

    tables = dense = 0
    for key, value in model.state_dict().items():
        if "embedding_bags" in key:
            tables += size(value)
        else:
            dense += size(value)
    state = 0
    for key, per_param in optimizer.state_dict()["state"].items():
        if key.startswith(("embedding.", "replicated_tables.")):
            state += sum(size(v) for v in per_param.values())
    return {"table_mib": tables / MIB, "table_state_mib": state / MIB, "dense_mib": dense / MIB}


def _rank_main(rank: int, world: int, kind: str, cfg: dict[str, Any], store: str, out_dir: str) -> None:
    """One worker of one configuration: shard, warm up, time `steps` steps, write its measurements."""
    torch.set_num_threads(cfg["threads"])
    import torch.distributed as dist
    from torchrec.distributed.train_pipeline import TrainPipelineSparseDist

    from mtrec.distributed.env import local_process_group, quiet_worker_logs
    from mtrec.distributed.planner import build_plan, format_plan, plan_tables
    from mtrec.distributed.wrap import make_optimizer, shard

    quiet_worker_logs()
    with local_process_group(store, rank, world):
        baseline = _peak_rss_mib()
        local = cfg["batch_size"] // world
        network = _network(cfg)
        plan = build_plan(network, world, sharding=kind, batch_size=local, pg=dist.group.WORLD)
        start = time.perf_counter()
        model = shard(network, plan, torch.device("cpu"), cfg["optimizer"], 0.05)
        optimizer = make_optimizer(model, 1e-3, cfg["optimizer"], 0.05)
        shard_seconds = time.perf_counter() - start
        batches = _batches(cfg, local, rank, cfg["warmup"] + cfg["steps"])
        pipeline = TrainPipelineSparseDist(model, optimizer, torch.device("cpu"))
        stream = iter(batches)
        model.train()
        for _ in range(cfg["warmup"]):
            pipeline.progress(stream)
        dist.barrier()
        start = time.perf_counter()
        for _ in range(cfg["steps"]):
            pipeline.progress(stream)
        dist.barrier()
        seconds = time.perf_counter() - start
        result = {"rank": rank, "world": world, "sharding": kind, "seconds": seconds,
                  "examples_per_second": cfg["batch_size"] * cfg["steps"] / seconds,
                  "step_ms": 1000 * seconds / cfg["steps"], "shard_seconds": shard_seconds,
                  "baseline_rss_mib": baseline, "peak_rss_mib": _peak_rss_mib(), **_local_bytes(model, optimizer),
                  "plan": [{"table": t.table, "type": t.sharding_type, "ranks": list(t.ranks),
                            "shards": [list(s) for s in t.shard_sizes]} for t in plan_tables(plan)]}
        if rank == 0:
            result["plan_text"] = format_plan(plan, world)
        Path(out_dir, f"{kind}-{world}-{rank}.json").write_text(json.dumps(result))


def run_config(world: int, kind: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Run one (workers, sharding type) configuration in fresh processes; per-rank results plus a summary."""
    with tempfile.TemporaryDirectory(prefix="mtrec-scaling-") as tmp:
        mp.start_processes(_rank_main, args=(world, kind, cfg, f"{tmp}/store", tmp), nprocs=world,
                           start_method="spawn")
        ranks = [json.loads(Path(tmp, f"{kind}-{world}-{r}.json").read_text()) for r in range(world)]
    return {"workers": world, "sharding": kind, "examples_per_second": min(r["examples_per_second"] for r in ranks),
            "step_ms": max(r["step_ms"] for r in ranks), "peak_rss_mib": [r["peak_rss_mib"] for r in ranks],
            "table_mib": [r["table_mib"] for r in ranks], "table_state_mib": [r["table_state_mib"] for r in ranks],
            "baseline_rss_mib": [r["baseline_rss_mib"] for r in ranks], "dense_mib": ranks[0]["dense_mib"],
            "plan_text": ranks[0].get("plan_text", ""), "ranks": ranks}


def _table_bytes(cfg: dict[str, Any]) -> tuple[float, float]:
    """MiB of one table's weights and of its optimizer state."""
    weights = cfg["rows"] * cfg["dim"] * 4 / MIB
    state = {"rowwise_adagrad": cfg["rows"] * 4, "adagrad": cfg["rows"] * cfg["dim"] * 4, "sgd": 0}[cfg["optimizer"]]
    return weights, state / MIB


def analysis(results: list[dict[str, Any]], cfg: dict[str, Any]) -> str:
    """How memory and throughput grow with N GPU workers, from the measured per-table and per-step costs."""
    weights, state = _table_bytes(cfg)
    per_table = weights + state
    total = cfg["tables"] * per_table
    one = next(r for r in results if r["workers"] == 1)
    overhead = one["peak_rss_mib"][0] - one["table_mib"][0] - one["table_state_mib"][0]
    b, t, d = cfg["batch_size"], cfg["tables"], cfg["dim"]
    speedups = ", ".join(f"{r['sharding']} {r['examples_per_second'] / one['examples_per_second']:.2f}x"
                         for r in results if r["workers"] == 2) or "no 2-worker runs"
    pooled = b * t * d * 4 / MIB
    lines = [
        "## Analysis: N GPU workers",
        "",
        f"Measured costs. One table of {cfg['rows']:,} x {d} fp32 holds {weights:,.0f} MiB of weights and "
        f"{state:,.1f} MiB of {cfg['optimizer']} state, {per_table:,.0f} MiB in all; the {t} tables "
        f"{total:,.0f} MiB. Everything else a worker holds (runtime, dense model, Adam, batches, comm buffers) was "
        f"{overhead:,.0f} MiB on one worker. The measured per-worker table bytes match the plan exactly "
        f"(table_mib in the JSON).",
        "",
        f"Memory per worker with N workers: model-parallel types (table_wise, row_wise, column_wise) hold "
        f"{total:,.0f}/N MiB of tables plus that fixed part, so N = 8 GPUs need ~{total / 8:,.0f} MiB of tables "
        f"each; table_wise is balanced only while N <= {t} tables and is lumpy (whole tables) before that, row_wise "
        f"and column_wise split every table evenly. data_parallel keeps all {total:,.0f} MiB on every worker plus an "
        f"equal-size dense gradient ({t * weights:,.0f} MiB) that DDP all-reduces each step, so its per-worker "
        f"memory does not shrink with N at all: it only suits small tables.",
        "",
        f"Traffic per step at global batch {b}: the pooled embeddings are B x {t} tables x {d} x 4 B = "
        f"{pooled:,.1f} MiB forward and the same backward, spread over the workers, for table_wise and column_wise "
        f"(all-to-all) and row_wise (reduce-scatter of partial sums, plus the ids all-to-all); per worker that is "
        f"~2 x {pooled:,.1f}/N MiB each way, shrinking as N grows with the global batch fixed. data_parallel instead "
        f"all-reduces {t * weights:,.0f} MiB of dense table gradients every step, independent of N: at ~100 GB/s "
        f"(NVLink) that is ~{2 * t * weights / 1024 / 100 * 1000:,.0f} ms per step, at ~25 GB/s across nodes "
        f"~{2 * t * weights / 1024 / 25 * 1000:,.0f} ms.",
        "",
        "Throughput. With the global batch fixed, each GPU computes B/N examples of lookups and dense work, so the "
        "compute part of a step shrinks ~1/N and examples/s grows ~N until the all-to-all latency (a few collectives "
        "per step, tens of microseconds each on NVLink) and the dense all-reduce of the MLP (~1 MiB here) dominate. "
        f"Measured here (CPU, 1 thread per worker, so 2 workers use both cores where 1 worker uses one; the cores "
        f"are shared with other jobs, so expect noise): 2 workers vs 1 gave {speedups}. The ordering between types "
        "carries over to GPUs: row_wise and column_wise spread every big table evenly (best for the largest tables, "
        "which is why auto plans put tables of >= 1M rows row_wise on GPUs; column_wise costs one lookup per column "
        "shard, so it pays off only for wide tables); table_wise has the cheapest backward (no partial-sum "
        "reduction) but balances only whole tables; data_parallel pays a full-size gradient all-reduce every step "
        "and is right only for tables small enough to replicate.",
    ]
    return "\n".join(lines)


def markdown(results: list[dict[str, Any]], cfg: dict[str, Any]) -> str:
    """The report: setup, one row per configuration, the 2-worker plans, the analysis."""
    lines = [
        "# Distributed scaling (synthetic big tables)",
        "",
        f"{cfg['tables']} tables x {cfg['rows']:,} rows x {cfg['dim']} (fp32, {cfg['optimizer']} fused), MPT-Rec "
        f"dense part, global batch {cfg['batch_size']}, {cfg['steps']} timed steps after {cfg['warmup']} warm-up, "
        f"{cfg['threads']} thread(s) per worker, gloo on CPU; workers are processes on this machine.",
        "",
        "| workers | sharding | examples/s | step ms | peak RSS per worker (MiB) | tables per worker (MiB) |"
        " table optimizer state per worker (MiB) |",
        "|---:|---|---:|---:|---|---|---|",
    ]
    for r in results:
        fmt = lambda values: " / ".join(f"{v:,.0f}" for v in values)  # noqa: E731
        lines.append(f"| {r['workers']} | {r['sharding'] if r['workers'] > 1 else 'all tables local'} | "
                     f"{r['examples_per_second']:,.0f} | {r['step_ms']:,.0f} | {fmt(r['peak_rss_mib'])} | "
                     f"{fmt(r['table_mib'])} | {fmt(r['table_state_mib'])} |")
    lines += ["", "Peak RSS includes the Python/torch runtime (baseline "
              f"{results[0]['baseline_rss_mib'][0]:,.0f} MiB before the model). data_parallel tables also carry a "
              "dense gradient of their full size.", ""]
    for r in results:
        if r["workers"] > 1:
            lines += [f"Plan, {r['sharding']}:", "", "```", r["plan_text"], "```", ""]
    return "\n".join(lines + [analysis(results, cfg), ""])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every configuration and write reports/<out>/scaling.{json,md}."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=8)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4096, help="global batch")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--types", nargs="+", default=TYPES, choices=TYPES)
    parser.add_argument("--optimizer", default="rowwise_adagrad", choices=["rowwise_adagrad", "adagrad", "sgd"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="8 x 100k x 32, 8 steps")
    parser.add_argument("--out", default="reports/bench")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.dim, args.steps, args.warmup = 100_000, 32, 8, 2
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    cfg = {k: getattr(args, k) for k in ("tables", "rows", "dim", "batch_size", "steps", "warmup", "optimizer",
                                         "threads", "seed")}
    configs = [(1, "table_wise")] + [(2, kind) for kind in args.types]
    results = []
    for world, kind in tqdm(configs, desc="scaling", unit="config"):
        results.append(run_config(world, kind, cfg))
        r = results[-1]
        tqdm.write(f"{world} worker(s) {kind}: {r['examples_per_second']:,.0f} examples/s, peak RSS "
                   f"{max(r['peak_rss_mib']):,.0f} MiB per worker")
    summary = {"config": cfg, "results": [{k: v for k, v in r.items() if k != "plan_text"} for r in results]}
    write_results(args.out, "scaling", summary, markdown(results, cfg))
    return summary


if __name__ == "__main__":
    main()
