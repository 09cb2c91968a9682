"""The benchmark suite: every benchmark script at a profile's budget, one subprocess each, resumable, then a report.

python -m benchmarks.suite [--profile quick|full] [--out reports] [--resume reports/<run>] [--only NAME ...]

A run writes reports/<UTC timestamp>/: parts/<name>.{json,md,log} as each benchmark finishes, suite_state.json
(what is done), then results.json (validated against results_schema.json), report.md, report.html and charts/.
`--resume DIR` reruns only the benchmarks that have not finished there (or whose arguments changed since).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parent.parent
PROFILES = {
    "quick": "a reduced budget (fewer seeds, capped epochs, one dataset where noted, shorter timings) that finishes "
             "in minutes rather than hours (the report shows the measured time); its numbers show the pipeline works and the rough ordering, not "
             "the study's final values",
    "full": "the study's budget: every dataset, model and method, 3 seeds, recipe epochs with early stopping, "
            "full timings",
}
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Benchmark:
    """A benchmark script (`python -m <module> ARGS --out DIR` writing DIR/<name>.json) and its argv per profile."""

    name: str
    module: str
    title: str
    profiles: dict[str, list[str]]
    fixed_seeds: list[int] = field(default_factory=lambda: [0])

    def argv(self, profile: str) -> list[str]:
        """The script's arguments at `profile` (without --out)."""
        return list(self.profiles[profile])

    def seeds(self, profile: str) -> list[int]:
        """The seeds the profile's arguments select (--seeds / --seed), else the script's fixed ones."""
        args = self.argv(profile)
        for flag in ("--seeds", "--seed"):
            if flag in args:
                rest = args[args.index(flag) + 1:]
                values = [int(v) for v in _until_flag(rest)]
                if values:
                    return values
        return list(self.fixed_seeds)

    def config_hash(self, profile: str) -> str:
        """A short hash of what defines this benchmark's configuration: module and arguments."""
        blob = json.dumps({"module": self.module, "argv": self.argv(profile)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _until_flag(args: list[str]) -> list[str]:
    out = []
    for a in args:
        if a.startswith("--"):
            break
        out.append(a)
    return out


SUITE = [
    Benchmark("multitask", "benchmarks.multitask", "Multi-task models", {
        "quick": ["--datasets", "adult", "movielens-100k", "--seeds", "0", "1", "--max-steps", "120"],
        "full": ["--datasets", "adult", "movielens-100k", "--seeds", "0", "1", "2"]}),
    Benchmark("new_task", "benchmarks.new_task", "Adding a task", {
        "quick": ["--datasets", "adult", "--seeds", "0", "1", "--epochs", "2", "--backbones"],
        "full": ["--datasets", "adult", "movielens-100k", "--seeds", "0", "1", "2"]}),
    Benchmark("continual", "benchmarks.continual", "Sequences of task additions", {
        "quick": ["--datasets", "synthetic", "--rows", "12000", "--seeds", "0", "--epochs", "2"],
        "full": ["--datasets", "synthetic", "adult", "movielens-100k", "--seeds", "0", "1", "2"]}),
    Benchmark("sequences", "benchmarks.sequences", "Behaviour sequences", {
        "quick": ["--seeds", "0", "--epochs", "1", "--pretrain-epochs", "2", "--max-len", "20", "--variants", "bag",
                  "scratch-last", "frozen-last", "finetuned-last"],
        "full": ["--seeds", "0", "1", "2"]}),
    Benchmark("throughput", "benchmarks.throughput", "Training throughput", {
        "quick": ["--batch-sizes", "256", "2048", "--steps", "10", "--rounds", "2", "--variants", "fp32", "bf16",
                  "--big-batch-sizes", "512", "8192", "--max-seconds", "2"],
        "full": ["--batch-sizes", "256", "1024", "2048", "--steps", "60", "--rounds", "3",
                 "--big-batch-sizes", "512", "2048", "8192", "--max-seconds", "4"]}),
    Benchmark("time_to_quality", "benchmarks.time_to_quality", "Time to quality", {
        "quick": ["--seeds", "0", "--plain-epochs", "10", "--mtrec-epochs", "5"],
        "full": ["--seeds", "0", "1", "2", "--plain-epochs", "10"]}),
    Benchmark("inference", "benchmarks.inference", "Inference precisions", {
        "quick": ["--epochs", "1", "--seed", "0", "--calls", "20", "--batch-sizes", "1", "512"],
        "full": ["--epochs", "3", "--seed", "0", "--calls", "200", "--batch-sizes", "1", "64", "512"]}),
    Benchmark("scaling", "benchmarks.scaling", "Distributed scaling", {
        "quick": ["--quick", "--types", "table_wise", "row_wise", "--seed", "0"],
        "full": ["--seed", "0"]}),
    Benchmark("serve_load", "benchmarks.serve_load", "Serving load", {
        "quick": ["--duration", "8", "--clients", "4", "--seed", "0"],
        "full": ["--duration", "30", "--clients", "8", "--seed", "0"]}),
    Benchmark("batch_predict", "benchmarks.batch_predict", "Batch scoring", {
        "quick": ["--rows", "100000", "--workers", "1", "2", "--precisions", "fp32"],
        "full": ["--rows", "1000000", "10000000", "--workers", "1", "2", "--precisions", "fp32", "int8"]}),
    Benchmark("ingest", "benchmarks.ingest", "Training on files bigger than memory", {
        "quick": ["--rows", "100000", "--cardinality", "10000", "--modes", "stream", "memory",
                  "--checkpoint-ids", "1000000"],
        "full": ["--rows", "1000000", "10000000", "50000000"]}),
]


class SuiteError(RuntimeError):
    """A suite run that cannot start or resume (bad directory, profile mismatch, unknown benchmark)."""


def _write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (a crash never leaves half a file)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=float))
    os.replace(tmp, path)


def new_run_dir(out: Path) -> Path:
    """A fresh reports/<UTC timestamp>/ directory."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = out / stamp
    n = 1
    while path.exists():
        n += 1
        path = out / f"{stamp}-{n}"
    path.mkdir(parents=True)
    return path


def load_state(run_dir: Path, profile: str | None, selection: list[Benchmark]) -> dict[str, Any]:
    """The run's state: a new one, or the saved one when resuming (its profile wins; a different one is an error)."""
    path = run_dir / "suite_state.json"
    if path.exists():
        state = json.loads(path.read_text())
        if profile is not None and profile != state["profile"]:
            raise SuiteError(f"{run_dir} was started with --profile {state['profile']}, not {profile}")
        for b in selection:
            if b.name not in state["selection"]:
                state["selection"].append(b.name)
        return state
    return {"profile": profile or "quick", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "selection": [b.name for b in selection], "benchmarks": {}, "attempts": 0}


def _finished(state: dict[str, Any], bench: Benchmark) -> bool:
    """Done in this run with the configuration the profile has now (a changed configuration runs again)."""
    entry = state["benchmarks"].get(bench.name, {})
    return entry.get("status") == "done" and entry.get("config_hash") == bench.config_hash(state["profile"])


def run_one(bench: Benchmark, profile: str, run_dir: Path) -> dict[str, Any]:
    """Run one benchmark script in a subprocess from the repository root; its output goes to parts/<name>.log."""
    parts = run_dir / "parts"
    parts.mkdir(exist_ok=True)
    argv = bench.argv(profile)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    with open(parts / f"{bench.name}.log", "w") as log:
        proc = subprocess.run([sys.executable, "-m", bench.module, *argv, "--out", str(parts)], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    produced = parts / f"{bench.name}.json"
    ok = proc.returncode == 0 and produced.exists()
    return {"status": "done" if ok else "failed", "module": bench.module, "argv": argv,
            "config_hash": bench.config_hash(profile), "seeds": bench.seeds(profile), "seconds": seconds,
            "returncode": proc.returncode, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "load_average": [load_before, os.getloadavg()[0]]}


def _log_tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def assemble(run_dir: Path, state: dict[str, Any], wall_seconds: float) -> dict[str, Any]:
    """results.json's content: suite facts, environment, and per benchmark its run facts plus its script's results."""
    from benchmarks.common import environment

    benches: dict[str, Any] = {}
    for name in state["selection"]:
        entry = state["benchmarks"].get(name)
        if entry is None:
            continue
        record = dict(entry)
        record["environment"], record["results"] = None, None
        if entry["status"] == "done":
            data = json.loads((run_dir / "parts" / f"{name}.json").read_text())
            record["environment"] = data.pop("environment", None)
            record["results"] = data
        benches[name] = record
    return {"schema_version": SCHEMA_VERSION,
            "suite": {"profile": state["profile"], "profile_description": PROFILES[state["profile"]],
                      "created": state["created"], "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                      "wall_seconds": wall_seconds, "attempts": state["attempts"],
                      "run_dir": run_dir.name},
            "environment": environment(), "benchmarks": benches}


def run_suite(profile: str | None, out: Path, resume: Path | None = None, only: list[str] | None = None,
              benchmarks: list[Benchmark] | None = None) -> tuple[Path, dict[str, Any]]:
    """Run (or resume) the suite and write results.json + report; return the run directory and the results."""
    from benchmarks.report import write_report
    from benchmarks.schema import check

    available = benchmarks if benchmarks is not None else SUITE
    names = [b.name for b in available]
    unknown = [n for n in only or [] if n not in names]
    if unknown:
        raise SuiteError(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    selection = [b for b in available if not only or b.name in only]
    if resume is not None:
        if not (resume / "suite_state.json").exists():
            raise SuiteError(f"{resume} is not a suite run directory (no suite_state.json)")
        run_dir = resume
    else:
        run_dir = new_run_dir(out)
    state = load_state(run_dir, profile, selection)
    state["attempts"] += 1
    state.setdefault("wall_seconds", 0.0)
    _write_json(run_dir / "suite_state.json", state)
    by_name = {b.name: b for b in available}
    todo = [by_name[n] for n in state["selection"] if n in by_name and not _finished(state, by_name[n])]
    done = len(state["selection"]) - len(todo)
    print(f"suite: {run_dir} ({state['profile']} profile; {done} done, {len(todo)} to run)", flush=True)
    bar = tqdm(total=len(state["selection"]), initial=done, desc="suite", unit="benchmark")
    for bench in todo:
        bar.set_postfix_str(bench.name)
        start = time.perf_counter()
        entry = run_one(bench, state["profile"], run_dir)
        state["wall_seconds"] += time.perf_counter() - start
        state["benchmarks"][bench.name] = entry
        _write_json(run_dir / "suite_state.json", state)
        bar.update()
        verdict = f"done in {entry['seconds']:.0f} s" if entry["status"] == "done" else \
            f"FAILED (exit {entry['returncode']}); log: {run_dir / 'parts' / (bench.name + '.log')}\n" + \
            _log_tail(run_dir / "parts" / f"{bench.name}.log")
        tqdm.write(f"{bench.name}: {verdict}")
    bar.close()
    results = assemble(run_dir, state, state["wall_seconds"])
    check(results)
    _write_json(run_dir / "results.json", results)
    write_report(run_dir, results)
    return run_dir, results


def main(argv: list[str] | None = None) -> int:
    """Command line: run or resume the suite; exit 1 if a benchmark failed (its log is in parts/)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.suite", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=list(PROFILES), help="budget (default quick; a resumed run keeps its own)")
    parser.add_argument("--out", default="reports", help="parent directory of the run directory")
    parser.add_argument("--resume", help="a run directory to finish: only benchmarks not done there run")
    parser.add_argument("--only", nargs="+", help="run only these benchmarks")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and their arguments, then exit")
    args = parser.parse_args(argv)
    if args.list:
        for b in SUITE:
            print(f"{b.name:<14} python -m {b.module} {' '.join(b.argv(args.profile or 'quick'))}")
        return 0
    try:
        run_dir, results = run_suite(args.profile, Path(args.out), Path(args.resume) if args.resume else None,
                                     args.only)
    except SuiteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = [n for n, b in results["benchmarks"].items() if b["status"] != "done"]
    print(f"report: {run_dir / 'report.md'} and {run_dir / 'report.html'}")
    if failed:
        print(f"failed: {', '.join(failed)}; rerun them with --resume {run_dir}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
