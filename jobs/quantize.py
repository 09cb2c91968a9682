"""Quantize a trained checkpoint (self-adaptive mixed precision within an AUC budget) and save it.

    python -m jobs.quantize --config jobs/configs/quantize_adult.yaml
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python -m jobs.quantize --config jobs/configs/quantize_adult.yaml --checkpoint /abs/path/model

The config holds the options below (checkpoint, dataset + split or calibration, max_auc_drop, out).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from jobs import parse_with_config, user_errors
from mtrec.cli import add_overwrite_arg, check_checkpoint_output
from mtrec.quant.planner import MAX_AUC_DROP
from mtrec.workflows import SPLITS


def build_parser() -> argparse.ArgumentParser:
    """This job's options."""
    p = argparse.ArgumentParser(prog="python -m jobs.quantize", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="YAML/JSON of this job's options")
    p.add_argument("--checkpoint", help="trained fp32 checkpoint (unsharded, or a sharded one from jobs.train)")
    p.add_argument("--dataset", help="built-in dataset to calibrate on (e.g. adult)")
    p.add_argument("--split", default="valid", choices=SPLITS)
    p.add_argument("--calibration", help="labelled calibration frame (Parquet/CSV) instead of --dataset")
    p.add_argument("--max-auc-drop", type=float, default=MAX_AUC_DROP, help=f"per-task AUC budget ({MAX_AUC_DROP})")
    p.add_argument("--options", type=json.loads, default={}, help='more quantize options as JSON')
    p.add_argument("--out", help="quantized checkpoint directory to write")
    add_overwrite_arg(p)
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the job; returns the quantizer's report."""
    parser = build_parser()
    args = parse_with_config(parser, argv)
    for needed in ("checkpoint", "out"):
        if not getattr(args, needed):
            parser.error(f"--{needed} is required (flag or config key)")
    from mtrec import workflows

    with user_errors(parser):
        check_checkpoint_output(args.out, args.overwrite)
        report = workflows.quantize_checkpoint(args.checkpoint,
                                               workflows.split_frame(args.dataset, args.split, args.calibration),
                                               max_auc_drop=args.max_auc_drop, **dict(args.options or {}))
    with user_errors(parser):
        path = report.save(args.out, overwrite=args.overwrite)
    print(report.model.summary())
    print(f"quantized checkpoint: {path}")
    return report.report


if __name__ == "__main__":
    main(sys.argv[1:])
