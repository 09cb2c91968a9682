"""`mtrec quantize` and `mtrec predict --precision`: the command-line side of mtrec.quant."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mtrec.quant.planner import MODES, OBJECTIVES, PRESETS, preset_plan, quantize
from mtrec.quant.precision import QuantizationError
from mtrec.quant.quantized import QuantizedModel


def add_parser(sub: Any) -> None:
    """Register `mtrec quantize` on the CLI's subparsers."""
    p = sub.add_parser("quantize", help="mixed-precision inference copy of a checkpoint (SAMP-style planner)")
    p.add_argument("--checkpoint", required=True, help="a trained mtrec checkpoint")
    p.add_argument("--out", required=True, help="quantized checkpoint directory to write")
    p.add_argument("--dataset", help="calibrate on a built-in dataset's split (adult, movielens-100k, synthetic)")
    p.add_argument("--split", default="valid", choices=["train", "valid", "test"])
    p.add_argument("--calibration", help="labelled Parquet/CSV calibration data (instead of --dataset)")
    p.add_argument("--max-auc-drop", type=float, default=0.001, help="per-task AUC budget (default 0.001)")
    p.add_argument("--objective", default="latency", choices=OBJECTIVES)
    p.add_argument("--mode", default="auto", choices=MODES)
    p.add_argument("--precision", choices=[p for p in PRESETS if p != "fp32"],
                   help="one precision everywhere instead of the search (int4 = int4 tables, int8 dense)")
    p.add_argument("--batch-size", type=int, default=512, help="rows per call the latency is measured at")
    p.add_argument("--json", help="also write the planner's report here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Quantize a checkpoint and save it."""
    import mtrec

    model = mtrec.load(args.checkpoint)
    if isinstance(model, QuantizedModel):
        raise SystemExit(f"error: {args.checkpoint} is already quantized; quantize the fp32 checkpoint")
    calibration = None
    if args.dataset:
        calibration = getattr(mtrec.datasets.load(args.dataset), args.split)
    elif args.calibration:
        calibration = args.calibration
    try:
        if args.precision:
            quantized = QuantizedModel.from_model(model, preset_plan(model, args.precision),
                                                  {"mode": f"uniform {args.precision}"})
        else:
            quantized = quantize(model, calibration, max_auc_drop=args.max_auc_drop, objective=args.objective,
                                 mode=args.mode, batch_size=args.batch_size)
    except QuantizationError as exc:
        raise SystemExit(f"error: {exc}") from None
    path = mtrec.save(quantized, args.out)
    print(quantized.summary())
    print(f"quantized checkpoint: {path}")
    if args.json:
        Path(args.json).write_text(json.dumps(quantized.report, indent=2, default=str))


def with_precision(model: Any, precision: str | None) -> Any:
    """`model` itself without a precision; otherwise its inference copy with that precision everywhere."""
    if precision is None:
        return model
    if isinstance(model, QuantizedModel):
        raise SystemExit("error: --precision applies to fp32 checkpoints; this checkpoint is already quantized")
    return QuantizedModel.from_model(model, preset_plan(model, precision))
