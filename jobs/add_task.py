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
from pathlib import Path
from typing import Any

from jobs import parse_with_config, require_api


def build_parser() -> argparse.ArgumentParser:
    """This job's options."""
    p = argparse.ArgumentParser(prog="python -m jobs.add_task", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="YAML/JSON of this job's options")
    p.add_argument("--checkpoint", help="trained checkpoint (unsharded, or a sharded one from jobs.train)")
    p.add_argument("--task", help="the new task's label column")
    p.add_argument("--method", default="prompt", help="prompt (default), tower, finetune, child_tuning, pecl, joint")
    p.add_argument("--dataset", help="built-in dataset carrying the new label (e.g. adult)")
    p.add_argument("--train", help="training frame (Parquet/CSV) with the new label column")
    p.add_argument("--valid", help="validation frame")
    p.add_argument("--test", help="test frame to evaluate every task on")
    p.add_argument("--options", type=json.loads, default={}, help='more add_task options as JSON, e.g. {"epochs": 5}')
    p.add_argument("--out", help="checkpoint directory to write")
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the job; returns its report (also written as add_task_report.json beside the checkpoint)."""
    parser = build_parser()
    args = parse_with_config(parser, argv)
    for needed in ("checkpoint", "task", "out"):
        if not getattr(args, needed):
            parser.error(f"--{needed} is required (flag or config key)")
    import mtrec

    add_task = require_api("add_task")
    model = mtrec.load(args.checkpoint)
    from mtrec.data.io import load_splits

    splits = load_splits(args.dataset, args.train, args.valid, args.test)
    if splits is None:
        parser.error("give --dataset NAME or --train PATH")
    train, valid, test = splits
    result = add_task(model, args.task, train, valid=valid, method=args.method, **dict(args.options or {}))
    report: dict[str, Any] = {"task": args.task, "method": args.method, "tasks": model.tasks,
                              "trainable_params": result.trainable_params, "total_params": result.total_params,
                              "seconds": result.seconds}
    if test is not None:
        report["test"] = mtrec.evaluate(model, test)
        for task, m in report["test"].items():
            print(f"  {task:<14} AUC {m['auc']:.4f}  logloss {m['logloss']:.4f}")
    path = mtrec.save(model, args.out)
    (Path(path) / "add_task_report.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"added {args.task!r}: {result.trainable_params:,} of {result.total_params:,} parameters trained "
          f"in {result.seconds:.1f} s")
    print(f"checkpoint: {path}")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
