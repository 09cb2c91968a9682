"""`mtrec` command line: argument parsers over mtrec.workflows (train, evaluate, predict, add-task, remove-task,
quantize), plus data, pretrain (a sequence encoder), serve, bench and report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from mtrec import workflows
from mtrec.batch.options import BAD_ROWS, BATCH_SIZE, ON_BAD_ROWS, PRECISION, PRECISIONS
from mtrec.errors import OutputError, UsageError
from mtrec.pretraining import DEFAULT_OUT as DEFAULT_PRETRAIN_OUT, DEFAULT_RECIPE as DEFAULT_PRETRAIN_RECIPE
from pretrain_stack.errors import ConfigError


def _tasks(text: str | None) -> list[str] | None:
    """--tasks a,b as a list (None when not given)."""
    return text.split(",") if text else None


def _hash_buckets(items: list[str] | None) -> dict[str, int]:
    """{feature: buckets} from --hash FEATURE=BUCKETS ...; a malformed item is a one-line error."""
    out = {}
    for item in items or []:
        name, _, value = item.partition("=")
        if not name or not value.isdigit():
            raise UsageError(f"--hash expects FEATURE=BUCKETS (an integer), got {item!r}")
        out[name] = int(value)
    return out


def check_checkpoint_output(out: str, overwrite: bool) -> None:
    """Refuse --out before any work when the checkpoint could not be saved there (OutputError)."""
    from mtrec.checkpoint import check_checkpoint_output as check

    check(out, overwrite)


def cmd_train(args: argparse.Namespace) -> None:
    """Train a model, evaluate it and save a checkpoint (its path checked first, so training is never lost)."""
    if args.out:
        check_checkpoint_output(args.out, args.overwrite)
    splits = workflows.load_splits(args.dataset, args.train, args.valid, args.test, tasks=_tasks(args.tasks),
                                   hash_buckets=_hash_buckets(args.hash), stream=True)
    report = workflows.train_model(args.model, splits, recipe=args.config, overrides=args.set, epochs=args.epochs,
                                   batch_size=args.batch_size, seed=args.seed, workers=args.workers,
                                   address=args.address, shuffle_buffer=args.shuffle_buffer,
                                   on_bad_rows=args.on_bad_rows)
    result = report.result
    if report.test is not None:
        print(workflows.format_metrics(f"{args.model}: test metrics (best epoch {result.best_epoch}, "
                                       f"{result.seconds:.1f} s)", report.test))
    if args.out:
        print(f"checkpoint: {report.save(args.out, overwrite=args.overwrite)}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    """Evaluate a checkpoint on a frame (or a built-in dataset split)."""
    if not args.dataset and not args.data:
        raise UsageError("give --dataset NAME (with --split) or --data PATH")
    if args.json:
        from mtrec.outputs import check_output_file

        check_output_file(args.json, overwrite=True)  # a path that cannot be written fails before the evaluation
    name = f"{args.dataset}:{args.split}" if args.dataset else args.data
    report = workflows.evaluate_checkpoint(args.checkpoint, workflows.split_frame(args.dataset, args.split, args.data),
                                           name=name)
    print(report.summary())
    if args.json:
        Path(args.json).write_text(json.dumps(report.metrics, indent=2))


def cmd_predict(args: argparse.Namespace) -> None:
    """Score Parquet/CSV input: in-process into one file, or on Ray Data actors into an output directory."""
    try:
        report = workflows.predict_files(args.checkpoint, args.input, args.output, workers=args.workers,
                                         batch_size=args.batch_size, precision=args.precision,
                                         id_column=args.id_column, on_bad_rows=args.on_bad_rows,
                                         address=args.address, overwrite=args.overwrite)
    except workflows.user_error_types():
        raise
    except (ValueError, FileExistsError) as exc:
        raise SystemExit(f"error: {exc}") from None
    if isinstance(report, workflows.PredictReport):
        print(report.summary())


def _option_value(text: str) -> Any:
    """A --option value: JSON when it parses (numbers, lists, booleans), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def cmd_add_task(args: argparse.Namespace) -> None:
    """Add a task to a checkpoint (frozen-backbone prompt tuning by default), evaluate it and save the result."""
    check_checkpoint_output(args.out, args.overwrite)
    splits = workflows.load_splits(args.dataset, args.train, args.valid, args.test)
    options = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed}
    for kv in args.option or []:
        key, _, value = kv.partition("=")
        options[key.replace("-", "_")] = _option_value(value)
    report = workflows.add_task_to_checkpoint(args.checkpoint, args.task, splits, method=args.method, **options)
    print(report.summary())
    if report.test is not None:
        print(workflows.format_metrics(f"{report.model.name} + {args.task}: test metrics", report.test))
    print(f"checkpoint: {report.save(args.out, overwrite=args.overwrite)}")


def cmd_remove_task(args: argparse.Namespace) -> None:
    """Retire an added task from a checkpoint and save the result (the other tasks' scores unchanged)."""
    check_checkpoint_output(args.out, args.overwrite)
    report = workflows.remove_task_from_checkpoint(args.checkpoint, args.task)
    print(report.summary())
    print(f"checkpoint: {report.save(args.out, overwrite=args.overwrite)}")


def cmd_data_synthetic(args: argparse.Namespace) -> None:
    """Write sharded synthetic Parquet (the generator streams: memory does not grow with --rows)."""
    from mtrec.data.datasets.synthetic import write_synthetic_dataset

    try:
        written = write_synthetic_dataset(args.out, args.rows, files=args.files, row_group_rows=args.row_group_rows,
                                          cardinality=args.cardinality, tables=args.tables, seed=args.seed)
    except (ValueError, TypeError, FileExistsError) as exc:
        raise SystemExit(f"error: {exc}") from None
    print(", ".join(f"{split}: {len(paths)} file(s)" for split, paths in written.items()) + f" in {args.out}")


def cmd_pretrain(args: argparse.Namespace) -> None:
    """Pretrain a sequence encoder on a dataset's training split (what `pretrained: DIR` in a recipe loads)."""
    from mtrec.pretraining import pretrain_encoder

    overrides = [*(["--epochs", str(args.epochs)] if args.epochs else []), *(args.set or [])]
    result = pretrain_encoder(args.dataset, args.out, recipe=args.config or DEFAULT_PRETRAIN_RECIPE,
                              overrides=overrides, overwrite=args.overwrite)
    test = result["test"]
    print(f"pretrained {result['recipe']} on {result['source']['rows']} training interactions: test "
          f"HR@10 {test['model']['hr@10_sampled']:.4f} (popularity {test['popularity']['hr@10_sampled']:.4f}, "
          f"sampled), best epoch {result['best_epoch']}, {result['wall_seconds']:.0f} s")
    print(f"encoder: {args.out}")


def _add_pretrain_parser(sub: Any) -> None:
    p = sub.add_parser("pretrain", help="pretrain a sequence encoder (pretrain_stack) on a dataset's training split")
    p.add_argument("--dataset", default="movielens-100k", help="built-in dataset with a behaviour sequence")
    p.add_argument("--out", default=DEFAULT_PRETRAIN_OUT, help="directory for the encoder (the *_seq recipes read "
                   f"{DEFAULT_PRETRAIN_OUT})")
    p.add_argument("--config", help="a pretrain_stack recipe (default: pretrain_stack/configs/sasrec.yaml)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--set", nargs="*", default=None, metavar="KEY=VALUE",
                   help="pretrain recipe overrides, e.g. train.lr=0.002")
    p.add_argument("--overwrite", action="store_true", help="replace an encoder already in --out")
    p.set_defaults(func=cmd_pretrain)


def add_data_args(p: argparse.ArgumentParser, tasks: bool = True) -> None:
    """--dataset, or --train/--valid/--test files (and --tasks): the options of workflows.load_splits."""
    p.add_argument("--dataset", help="built-in dataset: adult, movielens-100k, movielens-100k-seq, synthetic")
    p.add_argument("--train", help="training frame (Parquet/CSV) for your own data")
    p.add_argument("--valid", help="validation frame")
    p.add_argument("--test", help="test frame")
    if tasks:
        p.add_argument("--tasks", help="comma-separated label columns (default: the dataset's tasks)")


def add_overwrite_arg(p: argparse.ArgumentParser) -> None:
    """--overwrite: replace an existing checkpoint at --out (never a directory that is not one)."""
    p.add_argument("--overwrite", action="store_true", help="replace an existing mtrec checkpoint at --out")


def add_address_arg(p: argparse.ArgumentParser) -> None:
    """--address: the Ray cluster a command runs on."""
    p.add_argument("--address", help="Ray cluster to use (default: $RAY_ADDRESS, else an embedded local Ray)")


def _add_train_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train a multi-task model")
    p.add_argument("--model", default=workflows.MODEL, help="single, shared_bottom, mmoe, ple, stem, mptrec")
    p.add_argument("--config", help="a recipe file (default: mtrec/configs/<model>_<dataset>.yaml)")
    add_data_args(p)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--set", nargs="*", default=None, metavar="KEY=VALUE",
                   help="recipe overrides, e.g. train.lr=0.002 model.encoder.dropout=0.1")
    p.add_argument("--out", help="checkpoint directory to write")
    add_overwrite_arg(p)
    p.add_argument("--workers", type=int, help="train on N Ray Train workers with sharded tables")
    add_address_arg(p)
    p.add_argument("--shuffle-buffer", type=int, help="files: rows shuffled together (default 262144; 0 = none)")
    p.add_argument("--on-bad-rows", choices=BAD_ROWS,
                   help="files: fail (default) at the first bad row; skip: count it and write it to rejected.parquet")
    p.add_argument("--hash", nargs="*", metavar="FEATURE=BUCKETS",
                   help="hash these sparse features into a fixed number of rows instead of fitting a vocabulary")
    p.set_defaults(func=cmd_train)


def _add_evaluate_parser(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="evaluate a checkpoint")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--dataset")
    p.add_argument("--split", default="test", choices=workflows.SPLITS)
    p.add_argument("--data", help="a labelled Parquet/CSV file")
    p.add_argument("--json", help="also write the metrics as JSON here")
    p.set_defaults(func=cmd_evaluate)


def add_predict_args(p: argparse.ArgumentParser) -> None:
    """The options of batch scoring shared by `mtrec predict` and jobs.predict (defaults: mtrec.batch.options)."""
    p.add_argument("--id-column", help="input column copied to the output (default: the file and row number)")
    p.add_argument("--precision", choices=PRECISIONS,
                   help=f"{PRECISION} (default): as saved; else score an fp32 checkpoint in this precision (FBGEMM "
                        "tables + dense; int4 = int4 tables)")
    p.add_argument("--batch-size", type=int, help=f"rows per batch (default {BATCH_SIZE})")
    p.add_argument("--on-bad-rows", choices=BAD_ROWS,
                   help=f"{ON_BAD_ROWS} (default): stop at the first bad row; skip: write it to rejected.parquet")
    add_address_arg(p)
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output (a scores file or directory) on success; never an input")


def _add_predict_parser(sub: Any) -> None:
    p = sub.add_parser("predict", help="score Parquet/CSV files with a checkpoint (in-process, or on Ray actors)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--input", required=True, help="a Parquet/CSV file, a directory of them, or a glob")
    p.add_argument("--output", required=True,
                   help="a .parquet/.csv file (in-process), or a directory: batch scoring on Ray Data actors")
    p.add_argument("--workers", type=int, help="predictor actors (batch scoring into an output directory)")
    add_predict_args(p)
    p.set_defaults(func=cmd_predict)


def _add_add_task_parser(sub: Any) -> None:
    p = sub.add_parser("add-task", help="add a task to a trained checkpoint (frozen backbone, prompt tuning)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--task", required=True, help="the new task's label column")
    p.add_argument("--method", default=workflows.METHOD,
                   help="prompt (default), tower, task_embedding, finetune, child_tuning, pecl, cnf or joint")
    add_data_args(p, tasks=False)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--option", nargs="*", metavar="KEY=VALUE",
                   help="more add_task options, e.g. tower_hidden=[32] temperature=32 reserve_p=0.2")
    p.add_argument("--out", required=True, help="checkpoint directory to write (--checkpoint itself with --overwrite)")
    add_overwrite_arg(p)
    p.set_defaults(func=cmd_add_task)


def _add_remove_task_parser(sub: Any) -> None:
    p = sub.add_parser("remove-task", help="retire a task added to a checkpoint (other tasks bit-identical)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--task", required=True, help="the added task to remove")
    p.add_argument("--out", required=True, help="checkpoint directory to write (--checkpoint itself with --overwrite)")
    add_overwrite_arg(p)
    p.set_defaults(func=cmd_remove_task)


def cmd_quantize(args: argparse.Namespace) -> None:
    """Quantize a checkpoint and save it."""
    check_checkpoint_output(args.out, args.overwrite)
    calibration = workflows.split_frame(args.dataset, args.split, args.calibration)
    report = workflows.quantize_checkpoint(args.checkpoint, calibration, precision=args.precision,
                                           max_auc_drop=args.max_auc_drop, objective=args.objective, mode=args.mode,
                                           batch_size=args.batch_size)
    path = report.save(args.out, overwrite=args.overwrite)
    print(report.model.summary())
    print(f"quantized checkpoint: {path}")
    if args.json:
        Path(args.json).write_text(json.dumps(report.report, indent=2, default=str))


def _add_quantize_parser(sub: Any) -> None:
    from mtrec.quant.planner import MAX_AUC_DROP, MODES, OBJECTIVES
    from mtrec.quant.presets import PRESETS

    p = sub.add_parser("quantize", help="mixed-precision inference copy of a checkpoint (SAMP-style planner)")
    p.add_argument("--checkpoint", required=True, help="a trained mtrec checkpoint")
    p.add_argument("--out", required=True, help="quantized checkpoint directory to write")
    add_overwrite_arg(p)
    p.add_argument("--dataset", help="calibrate on a built-in dataset's split (adult, movielens-100k, synthetic)")
    p.add_argument("--split", default="valid", choices=workflows.SPLITS)
    p.add_argument("--calibration", help="labelled Parquet/CSV calibration data (instead of --dataset)")
    p.add_argument("--max-auc-drop", type=float, default=MAX_AUC_DROP,
                   help=f"per-task AUC budget (default {MAX_AUC_DROP})")
    p.add_argument("--objective", default=OBJECTIVES[0], choices=OBJECTIVES)
    p.add_argument("--mode", default=MODES[0], choices=MODES)
    p.add_argument("--precision", choices=[p for p in PRESETS if p != "fp32"],
                   help="one precision everywhere instead of the search (int4 = int4 tables, int8 dense)")
    p.add_argument("--batch-size", type=int, default=512, help="rows per call the latency is measured at")
    p.add_argument("--json", help="also write the planner's report here")
    p.set_defaults(func=cmd_quantize)


def _add_data_parser(sub: Any) -> None:
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="mtrec", description="Multi-task recommendation with prompt tuning.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_train_parser, _add_evaluate_parser, _add_predict_parser, _add_add_task_parser,
                _add_remove_task_parser, _add_data_parser, _add_quantize_parser, _add_pretrain_parser):
        add(sub)
    from mtrec.bench_commands import add_parser as add_bench_parser
    from mtrec.serve.commands import add_parser as add_serve_parser

    add_serve_parser(sub)
    add_bench_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `mtrec` console script."""
    args = build_parser().parse_args(argv)
    if getattr(args, "set", None):
        args.set = workflows.override_tokens(args.set)
    handled: tuple[type[BaseException], ...] = (ConfigError, UsageError, OutputError)
    try:
        handled = workflows.user_error_types()
        func: Callable[[argparse.Namespace], None] = args.func
        func(args)
    except handled as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:  # a user's path that cannot be read or written: one line, not a traceback
        if exc.filename is None:
            raise
        print(f"error: {exc.strerror or exc}: {exc.filename}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
