"""`mtrec bench` and `mtrec report`: run the benchmark suite of a source checkout, compare or rebuild reports.

The suite lives in the checkout's `benchmarks/` (not in the installed package, which never imports it), so these
commands find the checkout and run `python -m benchmarks.<module>` there as a subprocess.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

from mtrec.errors import UsageError


def find_checkout() -> Path:
    """The source checkout holding benchmarks/suite.py: the one mtrec is installed from, else cwd or a parent."""
    here = Path(__file__).resolve().parent.parent
    cwd = Path.cwd().resolve()
    for candidate in (here, cwd, *cwd.parents):
        if (candidate / "benchmarks" / "suite.py").is_file():
            return candidate
    raise SystemExit("error: the benchmark suite (benchmarks/suite.py) is part of the mtrec source checkout, not of "
                     "the installed package; run this from a checkout (git clone, then pip install -r "
                     "requirements.txt)")


def _run_module(module: str, args: list[str]) -> None:
    """Run `python -m <module> args` in the checkout; exit with its status when it fails."""
    code = subprocess.run([sys.executable, "-m", module, *args], cwd=find_checkout()).returncode
    if code:
        sys.exit(code)


def _absolute(path: str) -> str:
    return str(Path(path).resolve())


def cmd_bench(args: argparse.Namespace) -> None:
    """Run (or resume) the suite; the report lands in <out>/<timestamp>/."""
    argv = ["--out", _absolute(args.out)]
    if args.profile:
        argv += ["--profile", args.profile]
    if args.resume:
        argv += ["--resume", _absolute(args.resume)]
    if args.only:
        argv += ["--only", *args.only]
    if args.list:
        argv.append("--list")
    _run_module("benchmarks.suite", argv)


def cmd_report(args: argparse.Namespace) -> None:
    """compare two runs, rebuild a run's report, or validate results.json files."""
    for path in [getattr(args, name) for name in ("a", "b", "run_dir") if getattr(args, name, None)] + \
            list(getattr(args, "paths", None) or []):
        if not Path(path).exists():
            raise UsageError(f"no such file or directory: {path}")
    if args.action == "compare":
        _run_module("benchmarks.compare", [_absolute(args.a), _absolute(args.b)])
    elif args.action == "build":
        _run_module("benchmarks.report", [_absolute(args.run_dir)])
    else:
        _run_module("benchmarks.schema", [_absolute(p) for p in args.paths])


def add_parser(sub: Any) -> None:
    """Register `mtrec bench` and `mtrec report` on the CLI's subparsers."""
    p = sub.add_parser("bench", help="run the benchmark suite and write a report (source checkout only)")
    p.add_argument("--profile", choices=["quick", "full"],
                   help="quick (default: fewer seeds/epochs, minutes) or full (the study)")
    p.add_argument("--out", default="reports", help="reports go to OUT/<timestamp>/ (default reports)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="finish a crashed or partial run: only unfinished (or since changed) benchmarks run")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks")
    p.add_argument("--list", action="store_true", help="list the benchmarks and their arguments")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("report", help="compare, rebuild or validate benchmark reports")
    actions = p.add_subparsers(dest="action", required=True)
    c = actions.add_parser("compare", help="AUC deltas beyond noise and speed ratios, A -> B (exit 1 on AUC drop)")
    c.add_argument("a", help="reference run directory or results.json")
    c.add_argument("b", help="new run directory or results.json")
    c = actions.add_parser("build", help="rebuild report.md / report.html / charts from a run's results.json")
    c.add_argument("run_dir")
    c = actions.add_parser("validate", help="check results.json files against benchmarks/results_schema.json")
    c.add_argument("paths", nargs="+")
    p.set_defaults(func=cmd_report)
