"""Training on files bigger than memory: whole-job peak memory, examples/s and test AUC of one epoch streamed from
Parquet (in process, and on 2 Ray Train workers) beside the in-memory frame path, for growing row counts.

Synthetic data (8 tables, one multi-valued, 1M ids each by default) is written as sharded Parquet under --data-dir
(outside the repository; reused when present). Every configuration runs `python -m benchmarks.ingest --one ...` in
its own process, so each run's memory is its own: the whole job's peak is the summed PSS of that process and all
its descendants (Ray's processes and workers included), sampled every 0.25 s from outside (benchmarks.batch_predict's
sampler). Variants: `vocab` (a vocabulary per table, fitted while the files are scanned) and `hashed` (every sparse
feature hashed into --buckets rows, no vocabulary). Modes: `stream` (files, in process), `memory` (the train split
read into one pandas frame first; only up to --memory-max-rows), `ray2` (files, 2 Ray Train workers reading their
Ray Data splits; only up to --ray-max-rows). Ratios of examples/s are to the in-memory run of the same size and
variant when there is one. Test AUC is on the first --test-rows rows of the test split. `--sizes ROWS:IDS ...`
runs sizes with their own ids per table instead (e.g. 300000:10000 4000000:1000000: is examples/s flat in table
size?); "x first size" is then each run's examples/s over the first size's of the same variant and mode.

python -m benchmarks.ingest [--rows 1000000 10000000 50000000 | --sizes 300000:10000 4000000:1000000]
    [--variants vocab hashed] [--modes stream memory ray2] [--data-dir /tmp/mtrec-ingest] [--batch-size 4096]
    [--out reports/bench]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.batch_predict import PeakSampler
from benchmarks.common import write_results

ROOT = Path(__file__).resolve().parents[1]
MIB = 1 << 20
MODES = ("stream", "memory", "ray2")
VARIANTS = ("vocab", "hashed")


def _short(n: int) -> str:
    """1000000 -> '1m', 300000 -> '300k'."""
    return f"{n // 1_000_000}m" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


def data_dir_for(root: Path, rows: int, cardinality: int, files: int) -> Path:
    """The synthetic dataset of `rows` rows (train 80%), written once and reused (as `mtrec data synthetic` writes
    it, so a dataset written beforehand in the background is picked up)."""
    path = root / f"r{_short(rows)}-c{_short(cardinality)}"
    if not (path / "train").exists():
        from mtrec.data.datasets.synthetic import write_synthetic_dataset

        t0 = time.perf_counter()
        write_synthetic_dataset(path, rows, files=files, cardinality=cardinality, progress=False)
        print(f"generated {rows:,} rows -> {path} in {time.perf_counter() - t0:.0f} s", flush=True)
    return path


def run_one(data: Path, mode: str, variant: str, cardinality: int, batch_size: int, buckets: int,
            test_rows: int, max_steps: int = 0) -> dict[str, Any]:
    """Inside the measured process: build, train one epoch, evaluate; returns the run's figures."""
    import pandas as pd
    import pyarrow.parquet as pq

    import mtrec
    from mtrec.data.datasets.synthetic import make_spec

    spec = make_spec(cardinality=cardinality)
    schema = spec.schema()
    if variant == "hashed":
        schema = dataclasses.replace(schema, hash_buckets={f: buckets for f in schema.sparse})
    model = mtrec.build_model("mptrec", schema=schema, tasks=spec.task_names)
    settings: dict[str, Any] = {"epochs": 1, "batch_size": batch_size, "seed": 0, "progress": False,
                                "compile": False, "max_steps": max_steps or None}
    started = time.perf_counter()
    train: Any = str(data / "train")
    if mode == "memory":
        train = pd.concat([pd.read_parquet(p) for p in sorted((data / "train").glob("*.parquet"))],
                          ignore_index=True)
    if mode == "ray2":
        result = mtrec.train(model, train, workers=2, distributed={"storage_path": tempfile.mkdtemp(
            prefix="mtrec-ingest-ray-")}, **settings)
    else:
        result = mtrec.train(model, train, **settings)
    seconds = time.perf_counter() - started
    test_file = sorted((data / "test").glob("*.parquet"))[0]
    test = next(pq.ParquetFile(test_file).iter_batches(batch_size=test_rows)).to_pandas()
    metrics = mtrec.evaluate(model, test)
    return {"examples_per_s": result.examples_per_second, "examples": result.examples, "steps": result.steps,
            "job_seconds": seconds, "train_seconds": sum(h["seconds"] for h in result.history),
            "test_auc": {t: m["auc"] for t, m in metrics.items()},
            "mean_test_auc": float(np.mean([m["auc"] for m in metrics.values()])),
            "rows": result.history[-1].get("rows") if result.history else None}


def measure(data: Path, mode: str, variant: str, cardinality: int, batch_size: int, buckets: int,
            test_rows: int, max_steps: int = 0) -> dict[str, Any]:
    """Run one configuration in its own process; its figures plus the whole process tree's peak PSS."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    cmd = [sys.executable, "-m", "benchmarks.ingest", "--one", str(data), mode, variant, str(out),
           "--cardinality", str(cardinality), "--batch-size", str(batch_size), "--buckets", str(buckets),
           "--test-rows", str(test_rows), "--max-steps", str(max_steps)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    sampler = PeakSampler(proc.pid)
    code = proc.wait()
    peak = sampler.stop()
    try:
        if code != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited with {code}")
        result = json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)
    return {**result, "mode": mode, "variant": variant, "peak_pss_mib": peak / MIB}


def checkpoint_times(ids: int, buckets: int, work: Path) -> list[dict[str, Any]]:
    """Save and load seconds and manifest size of a checkpoint with an `ids`-id vocabulary (a 2-feature model,
    dim 4) and of the same model with both features hashed into `buckets` rows."""
    import pandas as pd

    import mtrec
    from mtrec.data.vocab import Vocabularies

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"user": rng.permutation(4 * ids)[:ids], "item": rng.integers(0, 1000, ids),
                       "click": rng.integers(0, 2, ids)})
    out = []
    for variant, hashed in (("vocab", {}), ("hashed", {"user": buckets, "item": buckets})):
        schema = mtrec.Schema(sparse=["user", "item"], dense=[], tasks=["click"], hash_buckets=hashed)
        model = mtrec.build_model("single", schema=schema, tasks=["click"], overrides={
            "model.embedding.parts": [{"name": "sparse_features", "embedding_dim": 4}]})
        model.build_network(Vocabularies.fit(df, schema))
        start = time.perf_counter()
        path = Path(mtrec.save(model, work / f"ckpt-{variant}"))
        saved = time.perf_counter() - start
        start = time.perf_counter()
        mtrec.load(path)
        loaded = time.perf_counter() - start
        out.append({"variant": variant, "ids": ids if not hashed else 0, "save_s": saved, "load_s": loaded,
                    "manifest_bytes": (path / "manifest.json").stat().st_size,
                    "checkpoint_mib": sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / MIB})
        print(f"checkpoint {variant}: save {saved:.1f} s, load {loaded:.1f} s, manifest "
              f"{out[-1]['manifest_bytes']:,} bytes", flush=True)
    return out


def frame_mib(data: Path) -> float:
    """MiB the train split takes as one pandas frame (deep), extrapolated from its first 100k rows."""
    import pyarrow.parquet as pq

    files = sorted((data / "train").glob("*.parquet"))
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in files)
    sample = next(pq.ParquetFile(files[0]).iter_batches(batch_size=100_000)).to_pandas()
    return float(sample.memory_usage(deep=True).sum() * rows / len(sample) / MIB)


def markdown(results: dict[str, Any]) -> str:
    """The results as a Markdown table."""
    flat = len({s.get("cardinality", results["cardinality"]) for s in results["sizes"]}) > 1
    ids = "ids per table as listed" if flat else f"{results['cardinality']:,} ids per table"
    lines = [f"One epoch of mptrec on synthetic data ({ids}, 8 tables), batch {results['batch_size']}"
             + (f" (first {results['max_steps']} steps after the full scan)" if results.get("max_steps") else "")
             + f", {results['cpu']}; peak = whole job's summed PSS (all processes); ratio = "
             "examples/s / the in-memory run's of the same rows and variant"
             + ("; x first size = examples/s / the first size's of the same variant and mode." if flat else "."), "",
             "| rows (train) | ids per table | as pandas MiB | Parquet MiB | variant | mode | peak PSS MiB | examples/s | "
             "ratio | x first size | test mean AUC |", "|---|---|---|---|---|---|---|---|---|---|---|"
             ] if results["sizes"] else []
    for size in results["sizes"]:
        for r in size["runs"]:
            ratio = f"{r['ratio']:.2f}" if r.get("ratio") is not None else "-"
            first = f"{r['x_first_size']:.2f}" if r.get("x_first_size") is not None else "-"
            lines.append(f"| {size['rows']:,} ({size['train_rows']:,}) | "
                         f"{size.get('cardinality', results['cardinality']):,} | {size['frame_mib']:,.0f} | "
                         f"{size['parquet_mib']:,.0f} | {r['variant']} | {r['mode']} | {r['peak_pss_mib']:,.0f} | "
                         f"{r['examples_per_s']:,.0f} | {ratio} | {first} | {r['mean_test_auc']:.4f} |")
    if results.get("checkpoints"):
        lines += ["", "| checkpoint | save s | load s | manifest.json bytes | size MiB |", "|---|---|---|---|---|"]
        lines += [f"| {c['variant']} ({c['ids']:,} ids) | {c['save_s']:.1f} | {c['load_s']:.1f} | "
                  f"{c['manifest_bytes']:,} | {c['checkpoint_mib']:,.0f} |" for c in results["checkpoints"]]
    return "\n".join(lines)


def _size(text: str) -> tuple[int, int]:
    """'300000:10000' -> (rows, ids per table)."""
    rows, _, ids = text.partition(":")
    if not (rows.isdigit() and ids.isdigit()):
        raise argparse.ArgumentTypeError(f"expected ROWS:IDS (e.g. 300000:10000), got {text!r}")
    return int(rows), int(ids)


def cpu_name() -> str:
    """The CPU model and whether it has native bf16."""
    info = Path("/proc/cpuinfo").read_text()
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    return f"{name}, {os.cpu_count()} CPUs, avx512_bf16 {'yes' if 'avx512_bf16' in info else 'no'}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Generate (or reuse) the data, run every configuration, write JSON + Markdown."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.ingest", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="*", default=[1_000_000, 10_000_000, 50_000_000],
                   help="sizes (rows) at --cardinality ids per table; none: only the checkpoint timing")
    p.add_argument("--sizes", nargs="+", type=_size, metavar="ROWS:IDS",
                   help="sizes with their own ids per table (instead of --rows)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--cardinality", type=int, default=1_000_000)
    p.add_argument("--buckets", type=int, default=1 << 20, help="rows of each hashed table")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--memory-max-rows", type=int, default=1_000_000, help="largest size run in memory too")
    p.add_argument("--ray-max-rows", type=int, default=1_000_000, help="largest size run on 2 Ray workers")
    p.add_argument("--test-rows", type=int, default=100_000)
    p.add_argument("--max-steps", type=int, default=0,
                   help="stop each run after this many steps (0: the whole epoch); the scan still reads every row")
    p.add_argument("--checkpoint-ids", type=int, default=10_000_000,
                   help="vocabulary size of the checkpoint save/load timing (0: skip it)")
    p.add_argument("--data-dir", default=str(Path(tempfile.gettempdir()) / "mtrec-ingest"))
    p.add_argument("--out", default="reports/bench")
    p.add_argument("--name", default="ingest")
    p.add_argument("--one", nargs=4, metavar=("DATA", "MODE", "VARIANT", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        data, mode, variant, out = args.one
        Path(out).write_text(json.dumps(run_one(Path(data), mode, variant, args.cardinality, args.batch_size,
                                                args.buckets, args.test_rows, args.max_steps)))
        return {}
    results: dict[str, Any] = {"cardinality": args.cardinality, "batch_size": args.batch_size, "cpu": cpu_name(),
                               "max_steps": args.max_steps,
                               "load_average": os.getloadavg(), "sizes": []}
    if args.checkpoint_ids:
        with tempfile.TemporaryDirectory(prefix="mtrec-ingest-ckpt-") as work:
            results["checkpoints"] = checkpoint_times(args.checkpoint_ids, args.buckets, Path(work))
    for rows, cardinality in args.sizes or [(rows, args.cardinality) for rows in args.rows]:
        data = data_dir_for(Path(args.data_dir), rows, cardinality, files=max(1, rows // 1_000_000))
        size = {"rows": rows, "cardinality": cardinality, "train_rows": int(0.8 * rows),
                "frame_mib": frame_mib(data), "parquet_mib": sum(f.stat().st_size for f in (data / "train").glob("*.parquet")) / MIB, "runs": []}
        for variant in args.variants:
            modes = [m for m in args.modes if (m != "memory" or rows <= args.memory_max_rows)
                     and (m != "ray2" or rows <= args.ray_max_rows)]
            for mode in modes:
                run = measure(data, mode, variant, cardinality, args.batch_size, args.buckets, args.test_rows,
                              args.max_steps)
                print(f"{rows:,} {variant} {mode}: peak {run['peak_pss_mib']:,.0f} MiB, "
                      f"{run['examples_per_s']:,.0f} examples/s, test AUC {run['mean_test_auc']:.4f}", flush=True)
                size["runs"].append(run)
            base = next((r for r in size["runs"] if r["variant"] == variant and r["mode"] == "memory"), None)
            for r in size["runs"]:
                if r["variant"] == variant:
                    r["ratio"] = r["examples_per_s"] / base["examples_per_s"] if base else None
        first = (results["sizes"] or [size])[0]["runs"]
        for r in size["runs"]:
            same = next((f for f in first if f["variant"] == r["variant"] and f["mode"] == r["mode"]), None)
            r["x_first_size"] = r["examples_per_s"] / same["examples_per_s"] if same else None
        results["sizes"].append(size)
        results["load_average_end"] = os.getloadavg()
    write_results(args.out, args.name, results, markdown(results))
    return results


if __name__ == "__main__":
    main()
