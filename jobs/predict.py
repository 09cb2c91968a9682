"""Score Parquet/CSV files with a checkpoint on a pool of Ray Data predictor actors (offline batch scoring).

    python -m jobs.predict --checkpoint /abs/ckpt --input '/abs/rows/*.parquet' --output /abs/scores --workers 2
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python -m jobs.predict --config my_predict.yaml --workers 2

The config holds the options below (checkpoint, input, output, workers, batch_size, precision, id_column,
on_bad_rows). Give absolute paths: a submitted job runs in a copy of the working directory. Under `ray job
submit` the job joins the cluster it was submitted to ($RAY_ADDRESS); run locally it starts its own loopback Ray.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from jobs import parse_with_config, user_errors
from mtrec.batch.options import BATCH_SIZE, ON_BAD_ROWS, PRECISION, WORKERS
from mtrec.cli import add_predict_args


def build_parser() -> argparse.ArgumentParser:
    """This job's options (defaults: mtrec.batch.options)."""
    p = argparse.ArgumentParser(prog="python -m jobs.predict", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="YAML/JSON of this job's options")
    p.add_argument("--checkpoint", help="trained (or quantized) checkpoint directory")
    p.add_argument("--input", help="a Parquet/CSV file, a directory of them, or a glob")
    p.add_argument("--output", help="output directory (appears only when the job succeeds)")
    p.add_argument("--workers", type=int, help=f"predictor actors (default {WORKERS})")
    add_predict_args(p)
    p.set_defaults(workers=WORKERS, batch_size=BATCH_SIZE, precision=PRECISION, on_bad_rows=ON_BAD_ROWS)
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the job; returns the run's summary (what output/summary.json holds)."""
    parser = build_parser()
    args = parse_with_config(parser, argv)
    for needed in ("checkpoint", "input", "output"):
        if not getattr(args, needed):
            parser.error(f"--{needed} is required (flag or config key)")
    from mtrec.batch.driver import batch_predict

    with user_errors(parser):
        result = batch_predict(args.checkpoint, args.input, args.output, workers=args.workers,
                               batch_size=args.batch_size, precision=args.precision, id_column=args.id_column,
                               on_bad_rows=args.on_bad_rows, address=args.address, overwrite=args.overwrite)
    return result.to_dict()


if __name__ == "__main__":
    main(sys.argv[1:])
