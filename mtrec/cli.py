"""`mtrec` command line: train | evaluate | predict | add-task (more subcommands join as the API grows)."""

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
    from mtrec.data.stream import FileSource

    tasks = args.tasks.split(",")
    hash_buckets = _hash_buckets(getattr(args, "hash", None))
    source = FileSource.of(args.train)  # files stream: only their first rows are read here, for the schema
    schema = mtrec.Schema.from_frame(source.head(), tasks=tasks, hash_buckets=hash_buckets)
    return schema, args.train, args.valid, args.test, tasks


def _hash_buckets(items: list[str] | None) -> dict[str, int]:
    """{feature: buckets} from --hash FEATURE=BUCKETS ...; a malformed item is a one-line error."""
    out = {}
    for item in items or []:
        name, _, value = item.partition("=")
        if not name or not value.isdigit():
            raise SystemExit(f"error: --hash expects FEATURE=BUCKETS (an integer), got {item!r}")
        out[name] = int(value)
    return out


def cmd_train(args: argparse.Namespace) -> None:
    """Train a model, evaluate it and save a checkpoint."""
    import mtrec

    schema, train, valid, test, tasks = _splits(args)
    model = mtrec.build_model(args.model, schema=schema, tasks=tasks, dataset=args.dataset,
                              recipe=args.config, overrides=args.set)
    result = mtrec.train(model, train, valid=valid, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                         workers=args.workers, address=args.address, shuffle_buffer=args.shuffle_buffer,
                         on_bad_rows=args.on_bad_rows)
    report: dict[str, Any] = {"model": args.model, "tasks": tasks, "best_epoch": result.best_epoch,
                              "seconds": result.seconds, "examples_per_second": result.examples_per_second,
                              "parameters": model.num_parameters(), "data": result.data}
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


def _scores_to_file(args: argparse.Namespace) -> bool:
    """Whether `mtrec predict` scores in-process into one file: no --workers and a .parquet/.pq/.csv output."""
    return args.workers is None and args.output.lower().endswith((".parquet", ".pq", ".csv"))


def cmd_predict(args: argparse.Namespace) -> None:
    """Score Parquet/CSV input: in-process into one file, or on Ray Data actors into an output directory."""
    import mtrec

    if not _scores_to_file(args):
        try:
            mtrec.batch_predict(args.checkpoint, args.input, args.output, workers=args.workers or 1,
                                batch_size=args.batch_size or 8192, precision=args.precision or "auto",
                                id_column=args.id_column, on_bad_rows=args.on_bad_rows or "fail",
                                address=args.address, overwrite=args.overwrite)
        except mtrec.DataError:
            raise
        except (ValueError, FileExistsError) as exc:
            raise SystemExit(f"error: {exc}") from None
        return
    if args.on_bad_rows == "skip":
        raise SystemExit("error: --on-bad-rows skip writes rejected.parquet beside the scores: give an output "
                         "directory (or --workers N)")
    from mtrec.data.io import read_frame
    from mtrec.quant.commands import with_precision

    precision = None if args.precision in (None, "auto") else args.precision
    model = with_precision(mtrec.load(args.checkpoint), precision)
    frame = read_frame(args.input)
    out = model.predict(frame, batch_size=args.batch_size or 8192)
    if args.id_column:
        out.insert(0, args.id_column, frame[args.id_column].to_numpy())
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    if args.output.lower().endswith(".csv"):
        out.to_csv(args.output, index=False)
    else:
        out.to_parquet(args.output, index=False)
    print(f"wrote {len(out):,} rows x {len(model.tasks)} tasks to {args.output}")


def _option_value(text: str) -> Any:
    """A --option value: JSON when it parses (numbers, lists, booleans), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def cmd_add_task(args: argparse.Namespace) -> None:
    """Add a task to a checkpoint (frozen-backbone prompt tuning by default), evaluate it and save the result."""
    import mtrec
    from mtrec.data.io import load_splits

    model = mtrec.load(args.checkpoint)
    splits = load_splits(args.dataset, args.train, args.valid, args.test)
    if splits is None:
        raise SystemExit("error: give --dataset NAME, or --train PATH (with --valid/--test)")
    train, valid, test = splits
    options = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr),
                                 ("seed", args.seed)) if v is not None}
    for kv in args.option or []:
        key, _, value = kv.partition("=")
        options[key.replace("-", "_")] = _option_value(value)
    result = mtrec.add_task(model, args.task, train, valid=valid, method=args.method, **options)
    report: dict[str, Any] = {"task": args.task, "method": args.method, "tasks": model.tasks,
                              "trainable_params": result.trainable_params, "total_params": result.total_params,
                              "trainable_share": result.trainable_share, "seconds": result.seconds,
                              "valid_auc": result.valid_auc, "best_epoch": result.best_epoch,
                              "history": result.history}
    shown = f", valid AUC {result.valid_auc:.4f}" if result.valid_auc is not None else ""
    print(f"added task {args.task!r} with {args.method}: {result.trainable_params:,} of {result.total_params:,} "
          f"parameters trained ({100 * result.trainable_share:.1f}%) in {result.seconds:.1f} s{shown}")
    if test is not None:
        report["test"] = mtrec.evaluate(model, test)
        _print_metrics(f"{model.name} + {args.task}: test metrics", report["test"])
    path = mtrec.save(model, args.out)
    (Path(path) / "add_task_report.json").write_text(json.dumps(report, indent=2))
    print(f"checkpoint: {path}")


def cmd_data_synthetic(args: argparse.Namespace) -> None:
    """Write sharded synthetic Parquet (the generator streams: memory does not grow with --rows)."""
    from mtrec.data.datasets.synthetic import write_synthetic_dataset

    try:
        written = write_synthetic_dataset(args.out, args.rows, files=args.files, row_group_rows=args.row_group_rows,
                                          cardinality=args.cardinality, tables=args.tables, seed=args.seed)
    except (ValueError, TypeError, FileExistsError) as exc:
        raise SystemExit(f"error: {exc}") from None
    print(", ".join(f"{split}: {len(paths)} file(s)" for split, paths in written.items()) + f" in {args.out}")


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
    p.add_argument("--workers", type=int, help="train on N Ray Train workers with sharded tables")
    p.add_argument("--address", help="Ray cluster to use (default: $RAY_ADDRESS, else an embedded local Ray)")
    p.add_argument("--shuffle-buffer", type=int, help="files: rows shuffled together (default 262144; 0 = none)")
    p.add_argument("--on-bad-rows", choices=["fail", "skip"],
                   help="files: fail (default) at the first bad row; skip: count it and write it to rejected.parquet")
    p.add_argument("--hash", nargs="*", metavar="FEATURE=BUCKETS",
                   help="hash these sparse features into a fixed number of rows instead of fitting a vocabulary")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a checkpoint")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--dataset")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--data", help="a labelled Parquet/CSV file")
    p.add_argument("--json", help="also write the metrics as JSON here")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="score Parquet/CSV files with a checkpoint (in-process, or on Ray actors)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--input", required=True, help="a Parquet/CSV file, a directory of them, or a glob")
    p.add_argument("--output", required=True,
                   help="a .parquet/.csv file (in-process), or a directory: batch scoring on Ray Data actors")
    p.add_argument("--id-column", help="input column copied to the output (default: the file and row number)")
    p.add_argument("--precision", choices=["auto", "fp32", "fp16", "int8", "int4"],
                   help="auto (default): as saved; else score an fp32 checkpoint in this precision (FBGEMM tables "
                        "+ dense; int4 = int4 tables)")
    p.add_argument("--workers", type=int, help="predictor actors (batch scoring into an output directory)")
    p.add_argument("--batch-size", type=int, help="rows per batch (default 8192)")
    p.add_argument("--on-bad-rows", choices=["fail", "skip"],
                   help="fail (default): stop at the first bad row; skip: write it to rejected.parquet")
    p.add_argument("--address", help="Ray cluster to use (default: $RAY_ADDRESS, else an embedded local Ray)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory on success")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("add-task", help="add a task to a trained checkpoint (frozen backbone, prompt tuning)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--task", required=True, help="the new task's label column")
    p.add_argument("--method", default="prompt",
                   help="prompt (default), tower, finetune, child_tuning, pecl or joint")
    p.add_argument("--dataset", help="built-in dataset: adult, movielens-100k, synthetic")
    p.add_argument("--train", help="training frame (Parquet/CSV) carrying the new label column")
    p.add_argument("--valid", help="validation frame (early stopping on the new task's AUC)")
    p.add_argument("--test", help="labelled test frame to evaluate every task on")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--option", nargs="*", metavar="KEY=VALUE",
                   help="more add_task options, e.g. tower_hidden=[32] temperature=32 reserve_p=0.2")
    p.add_argument("--out", required=True, help="checkpoint directory to write (may be --checkpoint itself)")
    p.set_defaults(func=cmd_add_task)

    p = sub.add_parser("data", help="write datasets to files")
    data = p.add_subparsers(dest="data_command", required=True)
    p = data.add_parser("synthetic", help="sharded synthetic Parquet: DIR/train (80%%), DIR/valid, DIR/test")
    p.add_argument("--rows", type=int, required=True, help="rows in all (train 80%%, valid 10%%, test 10%%)")
    p.add_argument("--files", type=int, default=1, help="train files (valid and test get files of that size)")
    p.add_argument("--out", required=True, help="a new (or empty) directory")
    p.add_argument("--cardinality", type=int, default=10_000, help="distinct ids per table")
    p.add_argument("--tables", type=int, default=8, help="sparse features (one of them multi-valued)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--row-group-rows", type=int, default=131_072, help="rows per Parquet row group")
    p.set_defaults(func=cmd_data_synthetic)

    from mtrec.bench_commands import add_parser as add_bench_parser
    from mtrec.quant.commands import add_parser as add_quantize_parser
    from mtrec.serve.commands import add_parser as add_serve_parser

    add_quantize_parser(sub)
    add_serve_parser(sub)
    add_bench_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `mtrec` console script."""
    args = build_parser().parse_args(argv)
    if getattr(args, "set", None):
        args.set = [tok for kv in args.set for tok in ("--" + kv.split("=", 1)[0], kv.split("=", 1)[1])]
    handled: tuple[type[BaseException], ...] = (ConfigError,)
    try:
        from mtrec.errors import DataError
        from mtrec.checkpoint import CheckpointError

        handled = (ConfigError, DataError, CheckpointError)
        func: Callable[[argparse.Namespace], None] = args.func
        func(args)
    except handled as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
