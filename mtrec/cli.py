"""`mtrec` command line: train | evaluate | predict (more subcommands join as the API grows)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from pretrain_stack.errors import ConfigError


def _print_metrics(title: str, metrics: dict[str, dict[str, float]]) -> None:
    print(f"\n{title}")
    print(f"  {'task':<14}{'AUC':>8}{'logloss':>10}{'rows':>9}")
    for task, m in metrics.items():
        print(f"  {task:<14}{m['auc']:>8.4f}{m['logloss']:>10.4f}{m['rows']:>9,}")


def _splits(args: argparse.Namespace) -> tuple[Any, Any, Any, Any, list[str]]:
    """(schema, train, valid, test, tasks) from a built-in dataset or from user files."""
    import mtrec

    if args.dataset:
        data = mtrec.datasets.load(args.dataset)
        tasks = args.tasks.split(",") if args.tasks else data.tasks
        return data.schema, data.train, data.valid, data.test, tasks
    if not args.train or not args.tasks:
        raise SystemExit("error: give --dataset NAME, or --train PATH with --tasks a,b")
    from mtrec.data.io import read_frame

    train = read_frame(args.train)
    tasks = args.tasks.split(",")
    schema = mtrec.Schema.from_frame(train, tasks=tasks)
    valid = read_frame(args.valid) if args.valid else None
    test = read_frame(args.test) if args.test else None
    return schema, train, valid, test, tasks


def cmd_train(args: argparse.Namespace) -> None:
    """Train a model, evaluate it and save a checkpoint."""
    import mtrec

    schema, train, valid, test, tasks = _splits(args)
    model = mtrec.build_model(args.model, schema=schema, tasks=tasks, dataset=args.dataset,
                              recipe=args.config, overrides=args.set)
    result = mtrec.train(model, train, valid=valid, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    report: dict[str, Any] = {"model": args.model, "tasks": tasks, "best_epoch": result.best_epoch,
                              "seconds": result.seconds, "examples_per_second": result.examples_per_second,
                              "parameters": model.num_parameters()}
    if test is not None:
        report["test"] = mtrec.evaluate(model, test)
        _print_metrics(f"{args.model}: test metrics (best epoch {result.best_epoch}, {result.seconds:.1f} s)",
                       report["test"])
    if args.out:
        path = mtrec.save(model, args.out)
        (Path(path) / "train_report.json").write_text(json.dumps(report, indent=2))
        print(f"checkpoint: {path}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    """Evaluate a checkpoint on a frame (or a built-in dataset split)."""
    import mtrec

    model = mtrec.load(args.checkpoint)
    if args.dataset:
        frame = getattr(mtrec.datasets.load(args.dataset), args.split)
    else:
        frame = args.data
    metrics = mtrec.evaluate(model, frame)
    _print_metrics(f"{model.name} on {args.dataset + ':' + args.split if args.dataset else args.data}", metrics)
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=2))


def cmd_predict(args: argparse.Namespace) -> None:
    """Score a Parquet/CSV file and write per-task probabilities."""
    import mtrec
    from mtrec.data.io import read_frame

    model = mtrec.load(args.checkpoint)
    frame = read_frame(args.input)
    out = model.predict(frame)
    if args.id_column:
        out.insert(0, args.id_column, frame[args.id_column].to_numpy())
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    if args.output.endswith(".csv"):
        out.to_csv(args.output, index=False)
    else:
        out.to_parquet(args.output, index=False)
    print(f"wrote {len(out):,} rows x {len(model.tasks)} tasks to {args.output}")


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", help="built-in dataset: adult, movielens-100k, synthetic")
    p.add_argument("--train", help="training frame (Parquet/CSV) for your own data")
    p.add_argument("--valid", help="validation frame")
    p.add_argument("--test", help="test frame")
    p.add_argument("--tasks", help="comma-separated label columns (default: the dataset's tasks)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="mtrec", description="Multi-task recommendation with prompt tuning.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a multi-task model")
    p.add_argument("--model", default="mptrec", help="single, shared_bottom, mmoe, ple, stem, mptrec")
    p.add_argument("--config", help="a recipe file (default: mtrec/configs/<model>_<dataset>.yaml)")
    _data_args(p)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--set", nargs="*", default=None, metavar="KEY=VALUE",
                   help="recipe overrides, e.g. train.lr=0.002 model.encoder.dropout=0.1")
    p.add_argument("--out", help="checkpoint directory to write")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a checkpoint")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--dataset")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--data", help="a labelled Parquet/CSV file")
    p.add_argument("--json", help="also write the metrics as JSON here")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="score a file with a checkpoint")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--id-column")
    p.set_defaults(func=cmd_predict)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `mtrec` console script."""
    args = build_parser().parse_args(argv)
    if getattr(args, "set", None):
        args.set = [tok for kv in args.set for tok in ("--" + kv.split("=", 1)[0], kv.split("=", 1)[1])]
    handled: tuple[type[BaseException], ...] = (ConfigError,)
    try:
        from mtrec.errors import DataError
        from mtrec.train.checkpoint import CheckpointError

        handled = (ConfigError, DataError, CheckpointError)
        func: Callable[[argparse.Namespace], None] = args.func
        func(args)
    except handled as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
