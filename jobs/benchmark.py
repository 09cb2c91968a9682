"""Run one benchmark suite from benchmarks/ (scaling, throughput, multitask, inference, ...) as a job.

    python -m jobs.benchmark --config jobs/configs/benchmark_scaling.yaml
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python -m jobs.benchmark --suite scaling -- --rows 200000

The config names the suite and its arguments ({suite: scaling, args: {rows: 200000, out: reports/bench}});
arguments after `--` are passed to the suite as they are.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from jobs import parse_with_config


def build_parser() -> argparse.ArgumentParser:
    """This job's options."""
    p = argparse.ArgumentParser(prog="python -m jobs.benchmark", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="YAML/JSON with suite and args")
    p.add_argument("--suite", help="module name under benchmarks/ (scaling, throughput, multitask, inference...)")
    p.add_argument("--args", type=dict, default={}, help=argparse.SUPPRESS)
    return p


def suite_argv(args: dict[str, Any]) -> list[str]:
    """{"rows": 1000, "sharding": ["row_wise", "table_wise"], "quick": true} -> --rows 1000 --sharding ... --quick."""
    out: list[str] = []
    for key, value in args.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            out.append(flag)
        elif isinstance(value, list):
            out += [flag, *map(str, value)]
        elif value is not None and value is not False:
            out += [flag, str(value)]
    return out


def main(argv: list[str] | None = None) -> Any:
    """Run the suite's main(argv) and return what it returns."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = build_parser()
    args = parse_with_config(parser, own)
    if not args.suite:
        parser.error("--suite is required (flag or config key)")
    try:
        module = importlib.import_module(f"benchmarks.{args.suite}")
    except ModuleNotFoundError as exc:
        parser.error(f"no benchmark suite benchmarks/{args.suite}.py ({exc})")
    if not callable(getattr(module, "main", None)):
        parser.error(f"benchmarks/{args.suite}.py has no main(argv)")
    return module.main(suite_argv(dict(args.args or {})) + extra)


if __name__ == "__main__":
    main()
