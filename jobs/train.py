"""Train a multi-task model on Ray workers with sharded tables, evaluate it, and save an unsharded checkpoint.

    python -m jobs.train --config mtrec/configs/mptrec_adult.yaml --workers 2
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python -m jobs.train --config mtrec/configs/mptrec_adult.yaml --workers 2

`--config` is a model recipe (mtrec/configs/<model>_<dataset>.yaml names both; otherwise give --model/--dataset),
optionally with a `distributed:` section (workers, sharding, tables, checkpoint_every, max_failures, ...).
The sharded checkpoints stay in the run directory; the best epoch is also saved unsharded at --out
(default <run dir>/model), which `mtrec.load`, `jobs.add_task` and `jobs.quantize` read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from jobs import user_errors
from mtrec.cli import add_overwrite_arg, check_checkpoint_output


def _model_and_dataset(config: str, model: str | None, dataset: str | None) -> tuple[str, str | None]:
    """The model and dataset names: given, or read from a `<model>_<dataset>.yaml` recipe name."""
    stem = Path(config).stem
    guessed_model, _, guessed_dataset = stem.partition("_")
    return model or guessed_model, dataset or (guessed_dataset or None)


def _table_overrides(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        name, sep, kind = item.partition("=")
        if not sep:
            raise SystemExit(f"error: --table expects NAME=SHARDING_TYPE, got {item!r}")
        out[name] = kind
    return out


def build_parser() -> argparse.ArgumentParser:
    """This job's options."""
    p = argparse.ArgumentParser(prog="python -m jobs.train", description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="model recipe YAML (optionally with a distributed: section)")
    p.add_argument("--model", help="model name (default: from the recipe file name)")
    p.add_argument("--dataset", help="built-in dataset (default: from the recipe file name, e.g. adult)")
    p.add_argument("--train", help="your own training frame (Parquet/CSV) instead of a built-in dataset")
    p.add_argument("--valid", help="validation frame")
    p.add_argument("--test", help="test frame")
    p.add_argument("--tasks", help="comma-separated label columns (with --train)")
    p.add_argument("--workers", type=int, help="Ray Train workers (default: the config's, else 2)")
    p.add_argument("--address", help="Ray cluster (default: $RAY_ADDRESS, else an embedded local Ray)")
    p.add_argument("--sharding", help="sharding type for every table: auto, data_parallel, table_wise, "
                                      "column_wise, row_wise, table_column_wise")
    p.add_argument("--table", action="append", metavar="NAME=TYPE", help="per-table sharding override")
    p.add_argument("--checkpoint-every", type=int, help="also checkpoint every N steps (default: epoch ends)")
    p.add_argument("--max-failures", type=int, help="worker failures to recover from (Ray FailureConfig)")
    p.add_argument("--storage-path", help="where runs and sharded checkpoints go (default ~/ray_results)")
    p.add_argument("--name", help="run name (default: mtrec-<model>-<time>)")
    p.add_argument("--launcher", default="ray", choices=["ray", "processes"],
                   help="ray (default) or local processes without Ray")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--set", nargs="*", default=None, metavar="KEY=VALUE",
                   help="recipe overrides, e.g. train.lr=0.002 distributed.workers=4")
    p.add_argument("--out", help="unsharded checkpoint directory (default: <run dir>/model)")
    add_overwrite_arg(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the job; returns its report (also written as train_report.json beside the checkpoint)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from mtrec import workflows
    from mtrec.distributed import load_job_config

    recipe, dist_cfg = load_job_config(args.config, workflows.override_tokens(args.set or []))
    dist_cfg = dist_cfg.replace(workers=args.workers, address=args.address, sharding=args.sharding,
                                checkpoint_every=args.checkpoint_every, max_failures=args.max_failures,
                                storage_path=args.storage_path, name=args.name,
                                tables={**dist_cfg.tables, **_table_overrides(args.table)})
    model_name, dataset = _model_and_dataset(args.config, args.model, args.dataset)
    with user_errors(parser):
        if args.out:
            check_checkpoint_output(args.out, args.overwrite)
        splits = workflows.load_splits(None if args.train else dataset, args.train, args.valid, args.test,
                                       tasks=args.tasks.split(",") if args.tasks else None)
        report = workflows.train_model(model_name, splits, recipe=recipe, distributed=dist_cfg,
                                       launcher=args.launcher, progress=not args.no_progress, epochs=args.epochs,
                                       batch_size=args.batch_size, seed=args.seed)
    result = report.result
    if report.test is not None:
        print(workflows.format_metrics(f"{model_name}: test metrics", report.test))
    with user_errors(parser):
        path = report.save(Path(args.out) if args.out else Path(result.run_dir or ".") / "model",
                           overwrite=args.overwrite)
    print(f"trained on {result.workers} workers: {result.steps}/{result.planned_steps} steps, best epoch "
          f"{result.best_epoch}, {result.seconds:.1f} s")
    print(f"sharded checkpoint: {result.checkpoint}")
    print(f"checkpoint: {path}")
    return report.to_dict()


if __name__ == "__main__":
    main(sys.argv[1:])
