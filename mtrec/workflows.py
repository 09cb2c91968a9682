"""The command layer: load splits, train, evaluate, add or remove a task, quantize and score files, each returning a
report.

`mtrec` (cli.py) and jobs/* are argument parsers over these functions, so a command does the same thing whichever
entry point runs it. Heavy modules load inside the functions: importing this module stays light.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtrec.batch.options import BATCH_SIZE, ON_BAD_ROWS, PRECISION, WORKERS
from mtrec.errors import DataError, UsageError

if TYPE_CHECKING:

    from mtrec.batch.driver import BatchResult
    from mtrec.data.schema import Schema
    from mtrec.model import MultiTaskModel
    from mtrec.quant.quantized import QuantizedModel
    from mtrec.recipe import Recipe

Metrics = dict[str, dict[str, float]]
MODEL, METHOD = "mptrec", "prompt"  # the model trained and the new-task method used when none is named
SPLITS = ("train", "valid", "test")


def user_error_types() -> tuple[type[BaseException], ...]:
    """The exceptions that are a user's mistake (bad config, data, checkpoint, options, precision or output),
    which the CLI and the jobs show as one line with exit code 2 instead of a traceback."""
    from mtrec.checkpoint import CheckpointError
    from mtrec.errors import DataError, OutputError
    from mtrec.quant.precision import QuantizationError
    from pretrain_stack.errors import ConfigError

    return (ConfigError, DataError, CheckpointError, UsageError, QuantizationError, OutputError)


def override_tokens(items: list[str]) -> list[str]:
    """KEY=VALUE recipe overrides as the config loader's ["--KEY", "VALUE", ...] tokens."""
    return [tok for kv in items for tok in ("--" + kv.split("=", 1)[0], kv.split("=", 1)[1])]
FILE_OUTPUTS = (".parquet", ".pq", ".csv")


@dataclass
class Splits:
    """Train/valid/test data (frames, or file paths read as a stream), the label columns and the schema."""

    train: Any
    valid: Any = None
    test: Any = None
    tasks: list[str] = field(default_factory=list)
    schema: Schema | None = None
    dataset: str | None = None

    @property
    def source(self) -> str:
        """What the data is, for reports: the dataset name or the training file."""
        return self.dataset or str(self.train)


def load_splits(dataset: str | None = None, train: Any = None, valid: Any = None, test: Any = None,
                tasks: list[str] | None = None, hash_buckets: dict[str, int] | None = None,
                stream: bool = False) -> Splits:
    """Splits of a built-in dataset (`tasks` default to its own), or of user files; with `stream` the files stay
    paths (training reads them as a stream; the schema comes from their first rows), else they are read."""
    if dataset:
        from mtrec.data.datasets import load

        data = load(dataset)
        return Splits(data.train, data.valid, data.test, list(tasks or data.tasks), data.schema, dataset)
    if not train:
        raise UsageError("give --dataset NAME, or --train PATH")
    from mtrec.data.io import read_frame
    from mtrec.data.schema import Schema

    if stream:
        from mtrec.data.stream import FileSource

        head = FileSource.of(train).head()
    else:
        train, valid, test = (read_frame(s) if s is not None else None for s in (train, valid, test))
        head = train
    schema = Schema.from_frame(head, tasks=tasks, hash_buckets=hash_buckets or {}) if tasks else None
    return Splits(train, valid, test, list(tasks or []), schema)


def split_frame(dataset: str | None, split: str, path: Any) -> Any:
    """One split of a built-in dataset, else `path` (a frame or file) as given."""
    if dataset:
        from mtrec.data.datasets import load

        return getattr(load(dataset), split)
    return path


def format_metrics(title: str, metrics: Metrics) -> str:
    """A table of per-task AUC, GAUC (when a user column is named), logloss, calibration and rows under `title`."""
    grouped = any("gauc" in m for m in metrics.values())
    head = f"  {'task':<14}{'AUC':>8}" + (f"{'GAUC':>8}" if grouped else "") + f"{'logloss':>10}{'calib':>8}{'rows':>9}"
    lines = [f"\n{title}", head]
    for task, m in metrics.items():
        gauc = f"{m.get('gauc', float('nan')):>8.4f}" if grouped else ""
        lines.append(f"  {task:<14}{m['auc']:>8.4f}{gauc}{m['logloss']:>10.4f}{m.get('calibration', float('nan')):>8.3f}"
                     f"{m['rows']:>9,}")
    return "\n".join(lines)


def _save_with_report(model: Any, out: str | Path, name: str, report: dict[str, Any], overwrite: bool) -> Path:
    """Save `model` at `out` (an existing checkpoint replaced only with `overwrite`) and write `report` as JSON
    beside its tensors; returns the checkpoint path."""
    from mtrec.api import save

    path = Path(save(model, out, overwrite=overwrite))
    (path / name).write_text(json.dumps(report, indent=2, default=str))
    return path


@dataclass
class TrainReport:
    """A trained model with what its run did (the TrainResult, distributed fields included) and its test metrics."""

    model: MultiTaskModel
    result: Any
    source: str
    test: Metrics | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON report (train_report.json): run figures, the distributed accounting when there was one, test."""
        r = self.result
        out: dict[str, Any] = {"model": self.model.name, "dataset": self.source, "tasks": list(self.model.tasks),
                               "best_epoch": r.best_epoch, "steps": r.steps, "seconds": r.seconds,
                               "examples_per_second": r.examples_per_second,
                               "parameters": self.model.num_parameters(), "data": r.data, "history": r.history}
        for name in ("workers", "planned_steps", "resumes", "ledger", "plan", "run_dir"):
            if hasattr(r, name):
                out[name] = getattr(r, name)
        if hasattr(r, "checkpoint"):
            out["sharded_checkpoint"] = r.checkpoint
        if self.test is not None:
            out["test"] = self.test
        return out

    def save(self, out: str | Path, overwrite: bool = False) -> Path:
        """Write the checkpoint and train_report.json in it."""
        return _save_with_report(self.model, out, "train_report.json", self.to_dict(), overwrite)


def train_model(model_name: str, splits: Splits, recipe: str | Path | Recipe | None = None,
                overrides: dict[str, Any] | list[str] | None = None, distributed: Any = None,
                launcher: str | None = None, **options: Any) -> TrainReport:
    """Build `model_name` for the splits' tasks, train it (in process; on Ray workers with `workers=`,
    `distributed=` or `launcher=`), and evaluate it on the test split when there is one."""
    import mtrec

    if not splits.tasks or splits.schema is None:
        raise UsageError("training on your own files needs --tasks a,b (the label columns)")
    model = mtrec.build_model(model_name, schema=splits.schema, tasks=splits.tasks, dataset=splits.dataset,
                              recipe=recipe, overrides=overrides)
    options = {k: v for k, v in options.items() if v is not None}
    if launcher is not None:
        from mtrec.distributed import train_distributed

        result = train_distributed(model, splits.train, splits.valid, distributed=distributed, launcher=launcher,
                                   **options)
    else:
        result = mtrec.train(model, splits.train, valid=splits.valid, distributed=distributed, **options)
    test = mtrec.evaluate(model, splits.test) if splits.test is not None else None
    return TrainReport(model, result, splits.source, test)


@dataclass
class EvalReport:
    """Per-task metrics of a checkpoint's model on some data."""

    model: str
    data: str
    metrics: Metrics

    def summary(self) -> str:
        """The metrics table."""
        return format_metrics(f"{self.model} on {self.data}", self.metrics)


def evaluate_checkpoint(checkpoint: str | Path, data: Any, name: str | None = None) -> EvalReport:
    """Load `checkpoint` and evaluate it on `data` (a labelled frame or files); `name` labels the data."""
    import mtrec

    model = mtrec.load(checkpoint)
    return EvalReport(model.name, name or str(data), mtrec.evaluate(model, data))


@dataclass
class AddTaskReport:
    """A model with a new task, the AddTaskResult and the test metrics of every task."""

    model: MultiTaskModel
    result: Any
    test: Metrics | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON report (add_task_report.json)."""
        r = self.result
        out: dict[str, Any] = {"task": r.task, "method": r.method, "tasks": list(self.model.tasks),
                               "trainable_params": r.trainable_params, "total_params": r.total_params,
                               "trainable_share": r.trainable_share, "seconds": r.seconds,
                               "valid_auc": r.valid_auc, "best_epoch": r.best_epoch, "history": r.history}
        if self.test is not None:
            out["test"] = self.test
        return out

    def summary(self) -> str:
        """One line: trained share, time and validation AUC."""
        r = self.result
        shown = f", valid AUC {r.valid_auc:.4f}" if r.valid_auc is not None else ""
        return (f"added task {r.task!r} with {r.method}: {r.trainable_params:,} of {r.total_params:,} parameters "
                f"trained ({100 * r.trainable_share:.1f}%) in {r.seconds:.1f} s{shown}")

    def save(self, out: str | Path, overwrite: bool = False) -> Path:
        """Write the checkpoint and add_task_report.json in it."""
        return _save_with_report(self.model, out, "add_task_report.json", self.to_dict(), overwrite)


def add_task_to_checkpoint(checkpoint: str | Path, task: str, splits: Splits, method: str = "prompt",
                           **options: Any) -> AddTaskReport:
    """Load `checkpoint`, add `task` (its label column in the splits) with `method`, evaluate on the test split."""
    import mtrec

    model = mtrec.load(checkpoint)
    if not isinstance(model, mtrec.MultiTaskModel):
        raise UsageError(f"{checkpoint} is a quantized checkpoint; add the task to its fp32 checkpoint, then quantize")
    options = {k: v for k, v in options.items() if v is not None}
    result = mtrec.add_task(model, task, splits.train, valid=splits.valid, method=method, **options)
    test = mtrec.evaluate(model, splits.test) if splits.test is not None else None
    return AddTaskReport(model, result, test)


@dataclass
class RemoveTaskReport:
    """A model with an added task retired, and that task's extension entry."""

    model: MultiTaskModel
    removed: dict[str, Any]

    def summary(self) -> str:
        """One line: what was removed and the tasks left."""
        return (f"removed task {self.removed['task']!r} (added with {self.removed.get('method', '?')}); tasks now "
                f"{self.model.tasks}")

    def save(self, out: str | Path, overwrite: bool = False) -> Path:
        """Write the checkpoint and remove_task_report.json in it."""
        return _save_with_report(self.model, out, "remove_task_report.json",
                                 {"removed": self.removed, "tasks": list(self.model.tasks)}, overwrite)


def remove_task_from_checkpoint(checkpoint: str | Path, task: str) -> RemoveTaskReport:
    """Load an fp32 `checkpoint` and retire its added task `task` (the others' predictions stay bit-identical)."""
    import mtrec

    model = mtrec.load(checkpoint)
    if not isinstance(model, mtrec.MultiTaskModel):
        raise UsageError(f"{checkpoint} is quantized; remove the task from the fp32 checkpoint, then quantize")
    return RemoveTaskReport(model, mtrec.remove_task(model, task))


@dataclass
class QuantizeReport:
    """A quantized model and the planner's report."""

    model: QuantizedModel

    @property
    def report(self) -> dict[str, Any]:
        """The planner's measured drops, gains and bytes."""
        return dict(self.model.report or {})

    def save(self, out: str | Path, overwrite: bool = False) -> Path:
        """Write the quantized checkpoint and quantize_report.json in it."""
        return _save_with_report(self.model, out, "quantize_report.json", self.report, overwrite)


def quantize_checkpoint(checkpoint: str | Path, calibration: Any = None, precision: str | None = None,
                        **options: Any) -> QuantizeReport:
    """Quantize an fp32 checkpoint: one `precision` everywhere, else the planner's search within the AUC budget
    on `calibration` (`options`: max_auc_drop, objective, mode, batch_size, ...)."""
    import mtrec
    from mtrec.quant.planner import quantize
    from mtrec.quant.presets import preset_plan
    from mtrec.quant.precision import QuantizationError
    from mtrec.quant.quantized import QuantizedModel

    model = mtrec.load(checkpoint)
    if isinstance(model, QuantizedModel):
        raise QuantizationError(f"{checkpoint} is already quantized; quantize the fp32 checkpoint")
    if precision:
        return QuantizeReport(QuantizedModel.from_model(model, preset_plan(model, precision),
                                                        {"mode": f"uniform {precision}"}, calibration))
    return QuantizeReport(quantize(model, calibration, **{k: v for k, v in options.items() if v is not None}))


@dataclass
class PredictReport:
    """What in-process scoring into one file wrote."""

    output: str
    rows: int
    tasks: list[str]

    def summary(self) -> str:
        """One line: rows and tasks written where."""
        return f"wrote {self.rows:,} rows x {len(self.tasks)} tasks to {self.output}"


def scores_to_file(output: str, workers: int | None) -> bool:
    """Whether scoring runs in process into one file: no workers asked and a .parquet/.pq/.csv output."""
    return workers is None and str(output).lower().endswith(FILE_OUTPUTS)


def predict_files(checkpoint: str | Path, inputs: str, output: str, workers: int | None = None,
                  batch_size: int | None = None, precision: str | None = None, id_column: str | None = None,
                  on_bad_rows: str | None = None, address: str | None = None,
                  overwrite: bool = False) -> PredictReport | BatchResult:
    """Score `inputs` with a checkpoint: in process into one .parquet/.csv file, or (an output directory, or
    `workers`) on Ray Data actors via batch_predict."""
    batch_size, precision, on_bad_rows = batch_size or BATCH_SIZE, precision or PRECISION, on_bad_rows or ON_BAD_ROWS
    if not scores_to_file(output, workers):
        from mtrec.batch.driver import batch_predict

        return batch_predict(checkpoint, inputs, output, workers=workers or WORKERS, batch_size=batch_size,
                             precision=precision, id_column=id_column, on_bad_rows=on_bad_rows, address=address,
                             overwrite=overwrite)
    if on_bad_rows == "skip":
        raise UsageError("--on-bad-rows skip writes rejected.parquet beside the scores: give an output directory "
                         "(or --workers N)")
    import mtrec
    from mtrec.data.files import find_inputs
    from mtrec.data.io import read_frame
    from mtrec.outputs import check_output_file, write_file
    from mtrec.quant.presets import with_precision

    files = find_inputs(inputs)
    check_output_file(output, overwrite, files)  # before any work: never onto an input, an old file only if asked
    model = with_precision(mtrec.load(checkpoint), precision)
    frame = read_frame(inputs)
    if id_column and id_column not in frame.columns:
        raise DataError(f"column {id_column!r} (--id-column) is missing from the input (row: all rows)",
                        column=id_column)
    out = model.predict(frame, batch_size=batch_size)
    if id_column:
        out.insert(0, id_column, frame[id_column].to_numpy())
    as_csv = str(output).lower().endswith(".csv")
    write_file(output, lambda tmp: out.to_csv(tmp, index=False) if as_csv else out.to_parquet(tmp, index=False),
               overwrite, files)
    return PredictReport(str(output), len(out), list(model.tasks))
