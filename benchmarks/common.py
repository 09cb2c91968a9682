"""Helpers shared by the benchmark scripts: environment facts, result files, mean +- std tables."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def environment() -> dict[str, Any]:
    """CPU model, thread count, library versions and git commit, stored beside every result."""
    from mtrec.checkpoint import library_versions

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                    text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", None
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "platform": platform.platform(),
            "versions": library_versions(), "git_commit": commit, "git_dirty": dirty,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S")}


def mean_std(values: list[float]) -> dict[str, float]:
    """{"mean", "std", "n"} (population std over seeds)."""
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std()), "n": int(arr.size)}


def fmt(ms: dict[str, float], digits: int = 4) -> str:
    """'0.8791 ± 0.0012'."""
    return f"{ms['mean']:.{digits}f} ± {ms['std']:.{digits}f}"


def add_task_grid_args(parser: argparse.ArgumentParser, name: str, datasets: list[str], methods: list[str]) -> None:
    """The arguments every add-a-task benchmark takes: datasets, seeds, methods, an epoch cap, threads, output."""
    parser.add_argument("--datasets", nargs="+", default=list(datasets))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(methods), help="add_task methods")
    parser.add_argument("--epochs", type=int, help="cap pre-training and add_task epochs (default: the recipes')")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads for every run (0: keep)")
    parser.add_argument("--out", default="reports/bench")
    parser.add_argument("--name", default=name, help="result files: <out>/<name>.json and .md")


def write_results(out_dir: str | Path, name: str, results: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write <name>.json and <name>.md into out_dir, print the Markdown and where both went; return both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{name}.json", out / f"{name}.md"
    json_path.write_text(json.dumps({"environment": environment(), **results}, indent=2, default=float))
    md_path.write_text(markdown)
    print(markdown)
    print(f"wrote {json_path} and {md_path}")
    return json_path, md_path
