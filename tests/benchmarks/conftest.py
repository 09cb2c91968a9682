"""A synthetic results.json (every benchmark, the shapes the scripts write) for fast report tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from benchmarks.common import mean_std
from benchmarks.suite import PROFILES, SCHEMA_VERSION

ENV = {"cpu": "Test CPU", "cpu_count": 2, "torch_threads": 2, "omp_num_threads": "1", "platform": "Linux",
       "versions": {"python": "3.11.0", "mtrec": "0.1.0", "torch": "2.13.0", "torchrec": "1.8.0"},
       "git_commit": "0123456789abcdef0123456789abcdef01234567", "git_dirty": False, "time": "2026-12-01T00:00:00"}


def _bench(module: str, results: dict[str, Any], seeds: list[int]) -> dict[str, Any]:
    return {"status": "done", "module": module, "argv": ["--seeds", *map(str, seeds)],
            "config_hash": "0123456789abcdef",
            "seeds": seeds, "seconds": 12.5, "returncode": 0, "finished": "2026-12-01T00:10:00Z",
            "load_average": [1.5, 1.9],
            "environment": ENV, "results": results}


def sequence_runs() -> list[dict[str, Any]]:
    """benchmarks.sequences runs: the bag at 0.71 / 0.67, scratch-last +0.005, finetuned-last +0.02, 2 seeds."""
    runs = []
    for seed in (0, 1):
        for variant, gain in (("bag", 0.0), ("scratch-last", 0.005), ("finetuned-last", 0.02)):
            test = {t: {"auc": base + gain + 0.001 * seed, "gauc": base - 0.01 + gain, "calibration": 1.0}
                    for t, base in (("like", 0.71), ("love", 0.67))}
            runs.append({"variant": variant, "seed": seed, "test": test, "seconds_per_epoch": 10.0 + 5 * gain,
                         "epochs_run": 3, "parameters": 1000, "trainable": 900})
    return runs


@pytest.fixture
def sequence_bench_runs() -> list[dict[str, Any]]:
    """Synthetic benchmarks.sequences runs (see sequence_runs)."""
    return sequence_runs()


def sequence_results() -> dict[str, Any]:
    from benchmarks.sequences import summarize

    runs = sequence_runs()
    summary, _ = summarize(runs, ["bag", "scratch-last", "finetuned-last"])
    return {"runs": runs, "summary": summary, "seeds": [0, 1], "epochs": None, "pretrain": {"encoder": "x"}}


def _multitask(rng: np.random.Generator) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for dataset, tasks in {"adult": ["income", "married"], "movielens-100k": ["click", "like"]}.items():
        summary[dataset] = {}
        for i, model in enumerate(["single", "shared_bottom", "mmoe", "ple", "stem", "mptrec"]):
            summary[dataset][model] = {t: mean_std(list(0.85 + 0.002 * i + rng.normal(0, 0.0005, 2))) for t in tasks}
            summary[dataset][model].update(parameters=10_000 + 1000 * i, seconds=mean_std([5.0 + i, 5.5 + i]))
    return {"runs": [], "summary": summary, "seeds": [0, 1], "epochs": 1}


def _new_task() -> dict[str, Any]:
    entries: dict[str, Any] = {"pretrained": {"mptrec": []}}
    for i, method in enumerate(["prompt", "tower", "finetune", "child_tuning", "pecl", "joint"]):
        entries[f"mptrec/{method}"] = {
            "new_auc": mean_std([0.85 + 0.001 * i, 0.851 + 0.001 * i]),
            "old_auc": {"income": mean_std([0.87, 0.871]), "married": mean_std([0.84, 0.842])},
            "old_identical": method in ("prompt", "tower"), "trainable_share": mean_std([0.02 + 0.15 * i] * 2),
            "trainable_params": 100 + i, "total_params": 1000, "seconds": mean_std([1.0 + 3 * i, 1.2 + 3 * i]),
            "joint_time_ratio": mean_std([(16.0 + 0.2) / (1.0 + 3 * i)] * 2),
            "auc_minus_joint": mean_std([0.001 * (i - 5)] * 2)}
    entries["mptrec/prompt"].update(probe_raw_auc=mean_std([0.82, 0.822]), probe_frozen_auc=mean_std([0.81, 0.812]))
    return {"runs": [], "pretrained": [], "summary": {"adult": entries}, "baselines": {"adult": {"education": 0.8525}},
            "seeds": [0, 1], "threads": 1}


def _throughput() -> dict[str, Any]:
    results = []
    for bs in (256, 2048):
        samples = {"plain": [20_000.0, 21_000.0], "fp32": [40_000.0, 41_000.0], "bf16": [50_000.0, 52_000.0]}
        eps = {k: float(np.median(v)) for k, v in samples.items()}
        results.append({"batch_size": bs, "examples_per_second": eps, "samples": samples,
                        "ratio_to_plain": {k: eps[k] / eps["plain"] for k in ("fp32", "bf16")}})
    big = []
    for bs in (512, 8192):
        samples = {"plain": [900.0, 950.0], "plain_sparse": [9_000.0, 9_500.0], "fp32": [20_000.0, 21_000.0],
                   "bf16": [30_000.0, 31_000.0]}
        eps = {k: float(np.median(v)) for k, v in samples.items()}
        roof = {"dense_examples_per_s": 40_000.0, "dense_flops_per_s": 1.3e11, "dense_of_bound": 0.4,
                "embedding_bytes_per_s": 2e9, "embedding_of_bound": 0.2, "step_bound_examples_per_s": 60_000.0,
                "step_of_bound": 0.5}
        big.append({"batch_size": bs, "examples_per_second": eps, "samples": samples,
                    **{f"ratio_to_{b}": {k: eps[k] / eps[b] for k in ("fp32", "bf16")} for b in ("plain", "plain_sparse")},
                    "roofline": {"dense_flops_per_example": 3.3e6, "embedding_bytes_per_example": 8e3,
                                 "variants": {"fp32": roof, "bf16": roof}}})
    bigtable = {"features": [], "table_parameters": 99_200_000, "table_mib": 378.4, "variants": ["fp32", "bf16"],
                "max_seconds": 4.0, "results": big,
                "machine": {"matmul": {"fp32": 1.5e11, "bf16": 3e11, "int8": 6e11}, "copy_bytes_per_s": 1e10,
                            "gemm_batch": 8192, "cpu_flags": ["avx512f", "avx512_bf16"]}}
    return {"results": results, "threads": 2, "steps": 10, "rounds": 2, "variants": ["fp32", "bf16"],
            "bigtable": bigtable}


def _time_to_quality() -> dict[str, Any]:
    runs = [{"seed": seed, "target_auc": {"income": 0.88, "married": 0.85}, "plain": [], "mtrec": [],
             "plain_seconds": 30.0 + seed, "mtrec_seconds": 1.0, "speedup": 30.0 + seed} for seed in (0, 1)]
    return {"runs": runs, "summary": {"speedup": mean_std([30.0, 31.0]), "reached": 2, "seeds": 2}, "threads": 2,
            "plain_epochs": 10}


def _inference() -> dict[str, Any]:
    configs = {}
    for name, ratio, speed, drop in [("fp32 eager", 1.0, 1.0, 0.0), ("fp32 predictor", 1.0, 1.1, 0.0),
                                     ("fp16", 0.5, 0.9, 0.0001), ("int8", 0.3, 1.4, 0.0004),
                                     ("int4", 0.2, 0.8, 0.003), ("auto", 0.32, 1.6, 0.0005)]:
        configs[name] = {"bytes": int(400_000 * ratio), "bytes_ratio": ratio, "file_bytes": None,
                         "auc": {"income": 0.88 - drop, "married": 0.85 - drop},
                         "auc_drop": {"income": drop, "married": drop},
                         "speed": {f"b{b}": {"model_eps": 1e5 * speed * b / 512, "end_to_end_eps": 3e4 * speed,
                                             "model_wall_eps": 1e5, "end_to_end_wall_eps": 3e4} for b in (1, 512)},
                         "plan": {}, "report": None}
    return {"model": "mptrec on adult", "threads": 1, "max_auc_drop": 0.001, "objective": "latency",
            "batch_sizes": [1, 512], "configs": configs, "checks": {"bytes <= 35% of fp32": True}}


def _scaling() -> dict[str, Any]:
    rows = [{"workers": w, "sharding": kind, "examples_per_second": eps, "step_ms": 4096 / eps * 1000,
             "peak_rss_mib": [900.0] * w, "table_mib": [100.0 / w] * w, "table_state_mib": [1.0] * w,
             "baseline_rss_mib": [400.0] * w, "dense_mib": 0.5, "ranks": []}
            for w, kind, eps in [(1, "table_wise", 30_000.0), (2, "table_wise", 45_000.0), (2, "row_wise", 40_000.0)]]
    cfg = {"tables": 8, "rows": 100_000, "dim": 32, "batch_size": 4096, "steps": 8, "warmup": 2,
           "optimizer": "rowwise_adagrad", "threads": 1, "seed": 0}
    return {"config": cfg, "results": rows}


def _serve_load() -> dict[str, Any]:
    return {"checkpoint": "adult mptrec, automatic plan", "clients": 4, "rows_per_request": 1, "replicas": 1,
            "threads_per_replica": 1, "duration_s": 8.0, "seconds": 8.1, "requests": 800, "ok": 800, "errors": 0,
            "statuses": {"200": 800}, "requests_per_second": 98.7, "p50_ms": 30.0, "p95_ms": 60.0, "p99_ms": 80.0,
            "mean_ms": 35.0, "rows_per_second": 98.7}


def _batch_predict() -> dict[str, Any]:
    runs = [{"workers_requested": w, "precision": "fp32", "rows_per_s": 50_000.0 * w ** 0.8, "speedup": w ** 0.8,
             "seconds": 2.0 / w, "run_peak_pss_mib": 900.0 + 300 * w,
             "check": {"output_rows": 100_000, "rows_match": True, "max_abs_diff": 1e-7}} for w in (1, 2)]
    return {"spec": "spec", "batch_size": 8192, "environment_cpus": 2,
            "sizes": [{"rows": 100_000, "parquet_mib": 5.0, "in_memory": {}, "runs": runs}]}


@pytest.fixture
def synthetic_results() -> dict[str, Any]:
    """A complete, schema-valid results dict with every benchmark of the suite."""
    rng = np.random.default_rng(0)
    benches = {"multitask": _bench("benchmarks.multitask", _multitask(rng), [0, 1]),
               "new_task": _bench("benchmarks.new_task", _new_task(), [0, 1]),
               "throughput": _bench("benchmarks.throughput", _throughput(), [0]),
               "time_to_quality": _bench("benchmarks.time_to_quality", _time_to_quality(), [0, 1]),
               "inference": _bench("benchmarks.inference", _inference(), [0]),
               "scaling": _bench("benchmarks.scaling", _scaling(), [0]),
               "serve_load": _bench("benchmarks.serve_load", _serve_load(), [0]),
               "batch_predict": _bench("benchmarks.batch_predict", _batch_predict(), [0]),
               "sequences": _bench("benchmarks.sequences", sequence_results(), [0, 1])}
    return {"schema_version": SCHEMA_VERSION,
            "suite": {"profile": "quick", "profile_description": PROFILES["quick"], "created": "2026-12-01T00:00:00Z",
                      "finished": "2026-12-01T00:12:00Z", "wall_seconds": 700.0, "attempts": 1, "run_dir": "x"},
            "environment": ENV, "benchmarks": benches}
