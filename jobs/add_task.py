"""Add a task to a trained checkpoint (frozen backbone, prompt tuning by default) and save the extended model.

    python -m jobs.add_task --config jobs/configs/add_task_adult.yaml
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python -m jobs.add_task --config jobs/configs/add_task_adult.yaml --checkpoint /abs/path/model

The config holds the options below (checkpoint, task, dataset or train/valid/test, method, options, out).
A sharded checkpoint from jobs.train loads as well as an unsharded one.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from jobs import parse_with_config, user_errors
from mtrec.cli import add_data_args, add_overwrite_arg, check_checkpoint_output
from mtrec.workflows import METHOD


def build_parser() -> argparse.ArgumentParser:
    """This job's options."""
    p = argparse.ArgumentParser(prog="python -m jobs.add_task", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="YAML/JSON of this job's options")
    p.add_argument("--checkpoint", help="trained checkpoint (unsharded, or a sharded one from jobs.train)")
    p.add_argument("--task", help="the new task's label column")
    p.add_argument("--method", default=METHOD,
                   help="prompt (default), tower, task_embedding, finetune, child_tuning, pecl, cnf, joint")
    add_data_args(p, tasks=False)
    p.add_argument("--options", type=json.loads, default={}, help='more add_task options as JSON, e.g. {"epochs": 5}')
    p.add_argument("--out", help="checkpoint directory to write")
    add_overwrite_arg(p)
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the job; returns its report (also written as add_task_report.json beside the checkpoint)."""
    parser = build_parser()
    args = parse_with_config(parser, argv)
    for needed in ("checkpoint", "task", "out"):
        if not getattr(args, needed):
            parser.error(f"--{needed} is required (flag or config key)")
    from mtrec import workflows

    with user_errors(parser):
        check_checkpoint_output(args.out, args.overwrite)
        splits = workflows.load_splits(args.dataset, args.train, args.valid, args.test)
        report = workflows.add_task_to_checkpoint(args.checkpoint, args.task, splits, method=args.method,
                                                  **dict(args.options or {}))
    if report.test is not None:
        print(workflows.format_metrics(f"{report.model.name} + {args.task}: test metrics", report.test))
    with user_errors(parser):
        path = report.save(args.out, overwrite=args.overwrite)
    print(report.summary())
    print(f"checkpoint: {path}")
    return report.to_dict()


if __name__ == "__main__":
    main(sys.argv[1:])
