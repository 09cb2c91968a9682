"""Offline batch scoring on Ray Data actors: rows/s and peak memory for 1 and 2 workers, fp32 and int8, on
synthetic Parquet inputs of 1M and 10M rows, side by side in one run.

The synthetic rows are generated to Parquet first, in chunks (never all in memory). A small mptrec model is trained
on 50k synthetic rows of the same spec. Every configuration runs `python -m jobs.predict` in its own process
(its own embedded loopback Ray), so each run's peak memory is its own: the driver's and each actor's peak RSS come
from the run's summary.json, and the whole run's peak (driver + Ray's processes + actors + read workers: summed PSS,
sampled every 0.25 s) is measured from outside. Each run checks that
the output has as many rows as the input and compares the scores of a sample of rows with in-process
`model.predict` (fp32) or the same int8 model (whose dynamic activation scales depend on the batch). The data's
in-memory size is that of the rows as pandas holds them (`memory_usage(deep=True)`, extrapolated from 100k rows)
and as Arrow holds the scored columns. Ratios (scoring rows/s) are to 1 worker fp32 at the same size.

python -m benchmarks.batch_predict [--rows 1000000 10000000] [--workers 1 2] [--precisions fp32 int8]
    [--batch-size 8192] [--data-dir DIR] [--out reports/bench]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

import mtrec
from benchmarks.common import write_results
from mtrec.data.datasets.synthetic import make_spec, synthetic, write_synthetic_parquet
from mtrec.quant.presets import with_precision

ROOT = Path(__file__).resolve().parents[1]
MIB = 1 << 20
SAMPLE_ROWS = 4096
ROW_GROUP_ROWS = 262_144  # generation chunk = Parquet row group = the unit of a read task


def tree_pss_bytes(root: int) -> int:
    """Summed PSS of process `root` and all its descendants (Linux /proc; shared pages split between the
    processes that map them, so the sum is the memory the whole tree uses)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            children.setdefault(int(stat[stat.rindex(")") + 2:].split()[1]), []).append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
        except (OSError, ValueError):
            continue
    return total


class PeakSampler:
    """Samples the summed PSS of a process tree in a thread; `peak` is the largest sample."""

    def __init__(self, pid: int, interval_s: float = 0.25) -> None:
        self.pid, self.interval_s, self.peak = pid, interval_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_pss_bytes(self.pid))
            self._stop.wait(self.interval_s)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def in_memory_size(path: Path, rows: int, columns: list[str]) -> dict[str, float]:
    """MiB of the input as pandas holds it (deep, all columns) and as Arrow holds the scored columns."""
    reader = pq.ParquetFile(path)
    sample = next(reader.iter_batches(batch_size=100_000))
    scale = rows / sample.num_rows
    pandas_bytes = sample.to_pandas().memory_usage(deep=True).sum() * scale
    arrow_bytes = sample.select(columns).nbytes * scale
    return {"pandas_mib": float(pandas_bytes / MIB), "arrow_scored_columns_mib": float(arrow_bytes / MIB)}


def sample_rows(rows: int, seed: int = 0) -> np.ndarray:
    """Sorted row numbers of a sample spread over the file."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(rows, size=min(SAMPLE_ROWS, rows), replace=False))


def check_output(out: Path, rows: int, sample: np.ndarray, reference: np.ndarray, fp32: np.ndarray,
                 tasks: list[str]) -> dict[str, Any]:
    """Output row count and the largest score difference to the reference (and to fp32) on the sampled rows."""
    scores = pads.dataset(out / "scores", format="parquet")
    count = scores.count_rows()
    table = scores.to_table(columns=["row", *tasks], filter=pc.field("row").isin(pa.array(sample)))
    got = table.sort_by("row")
    if got.num_rows != len(sample) or not np.array_equal(got.column("row").to_numpy(), sample):
        raise RuntimeError(f"{out}: sampled rows missing from the output")
    probs = np.stack([got.column(t).to_numpy() for t in tasks], axis=1)
    return {"output_rows": count, "rows_match": count == rows, "max_abs_diff": float(np.abs(probs - reference).max()),
            "max_abs_diff_fp32": float(np.abs(probs - fp32).max())}


def run_one(checkpoint: Path, data: Path, out: Path, workers: int, precision: str, batch_size: int) -> dict[str, Any]:
    """One configuration in its own process; its summary plus the sampled whole-run peak RSS."""
    cmd = [sys.executable, "-m", "jobs.predict", "--checkpoint", str(checkpoint), "--input", str(data),
           "--output", str(out), "--workers", str(workers), "--precision", precision, "--batch-size",
           str(batch_size)]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // workers))}
    env.pop("RAY_ADDRESS", None)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = PeakSampler(proc.pid)
    output, _ = proc.communicate()
    peak = sampler.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    print("\n".join(line for line in output.splitlines() if line.startswith(("scored", "  "))), flush=True)
    return {**summary, "process_seconds": time.perf_counter() - start, "run_peak_pss_mib": peak / MIB}


def _ratio(value: float) -> str:
    """A ratio for the table; "-" when its reference (1 worker fp32) was not part of the run."""
    return "-" if value != value else f"{value:.2f}"


def markdown(results: dict[str, Any]) -> str:
    """The results as Markdown tables, one per input size."""
    lines = ["# Batch scoring on Ray Data actors", "",
             f"Synthetic Parquet input (spec {results['spec']}), mptrec model, batch {results['batch_size']}, "
             f"{results['environment_cpus']} CPUs. rows/s: from the dataset's start (actor start-up included; Ray "
             "start-up excluded) and per second of the busiest actor's scoring time. Peak RSS of the driver and of each "
             "actor from VmHWM (shared libraries included; in brackets: before scoring, i.e. with Ray "
             "connected / the model loaded); whole run = summed PSS of every process of the "
             "run (driver, Ray's own processes, read workers, actors), sampled.", ""]
    for size in results["sizes"]:
        mem = size["in_memory"]
        lines += [f"## {size['rows']:,} rows (in memory: {mem['pandas_mib']:,.0f} MiB as pandas, "
                  f"{mem['arrow_scored_columns_mib']:,.0f} MiB as Arrow; Parquet {size['parquet_mib']:,.0f} MiB)", "",
                  "| workers | precision | rows/s | scoring rows/s | x 1w fp32 (scoring) | seconds | driver peak MiB "
                  "| actor peak MiB | whole run peak PSS MiB | output rows = input | max diff vs in-process |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in size["runs"]:
            actors = ", ".join(f"{w['peak_rss_bytes'] / MIB:,.0f} ({w['loaded_rss_bytes'] / MIB:,.0f} loaded; "
                               f"{w['rows']:,} rows)" for w in r["workers"])
            lines.append(f"| {r['workers_requested']} | {r['precision']} | {r['rows_per_s']:,.0f} | "
                         f"{r['scoring_rows_per_s']:,.0f} | {_ratio(r['speedup'])} | {r['seconds']:.1f} | "
                         f"{r['driver_peak_rss_bytes'] / MIB:,.0f} ({r['driver_start_rss_bytes'] / MIB:,.0f}) | "
                         f"{actors} | {r['run_peak_pss_mib']:,.0f} | {r['check']['rows_match']} | "
                         f"{r['check']['max_abs_diff']:.2e} ({r['check']['max_abs_diff_fp32']:.2e}) |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Generate the inputs, train the model, run every configuration, write JSON + Markdown."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.batch_predict", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--precisions", nargs="+", default=["fp32", "int8"], choices=["fp32", "int8"])
    p.add_argument("--batch-size", type=int, default=8192)
    p.add_argument("--data-dir", help="where the synthetic Parquet inputs go (default: a temporary directory)")
    p.add_argument("--out", default="reports/bench")
    p.add_argument("--name", default="batch_predict")
    args = p.parse_args(argv)
    spec = make_spec()
    work = Path(tempfile.mkdtemp(prefix="mtrec-batch-bench-"))
    data_dir = Path(args.data_dir) if args.data_dir else work
    try:
        train = synthetic(rows=60_000, seed=1)
        model = mtrec.build_model("mptrec", schema=train.schema, tasks=train.tasks)
        mtrec.train(model, train.train, valid=train.valid, epochs=1, seed=0, progress=False)
        checkpoint = mtrec.save(model, work / "model")
        references = {"fp32": model, "int8": with_precision(model, "int8")}
        results: dict[str, Any] = {"spec": str(spec), "batch_size": args.batch_size,
                                   "environment_cpus": os.cpu_count(), "sizes": []}
        for rows in args.rows:
            path = data_dir / f"synthetic-{rows}.parquet"
            if not path.exists():
                t0 = time.perf_counter()
                write_synthetic_parquet(path, rows, chunk_rows=ROW_GROUP_ROWS)
                print(f"generated {rows:,} rows -> {path} in {time.perf_counter() - t0:.1f} s", flush=True)
            sample = sample_rows(rows)
            frame = pads.dataset(path).take(sample).to_pandas()
            size = {"rows": rows, "parquet_mib": path.stat().st_size / MIB,
                    "in_memory": in_memory_size(path, rows, model.schema.features()), "runs": []}
            for workers in args.workers:
                for precision in args.precisions:
                    out = work / f"out-{rows}-{workers}-{precision}"
                    run = run_one(Path(checkpoint), path, out, workers, precision, args.batch_size)
                    reference = references[precision].predict_array(frame)
                    run.update(workers_requested=workers, check=check_output(
                        out, rows, sample, reference, references["fp32"].predict_array(frame), model.tasks))
                    shutil.rmtree(out)
                    size["runs"].append(run)
            base = next((r for r in size["runs"] if r["workers_requested"] == 1 and r["precision"] == "fp32"), None)
            for r in size["runs"]:
                r["speedup"] = r["scoring_rows_per_s"] / base["scoring_rows_per_s"] if base else float("nan")
            results["sizes"].append(size)
        write_results(args.out, args.name, results, markdown(results))
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
