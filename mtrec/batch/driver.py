"""`mtrec.batch_predict`: offline scoring of Parquet/CSV files on a pool of Ray Data predictor actors.

The input files are planned (row counts from Parquet footers), read by `PiecesDatasource` in blocks of
`batch_size` rows, scored by a pool of `workers` `BatchScorer` actors (each loads the checkpoint once), and
streamed back in input order to the driver, which writes part files as results arrive. Ray Data's streaming
executor keeps at most `buffer_bytes` of blocks in flight, so memory does not grow with the input. Without
`address`/$RAY_ADDRESS an embedded Ray bound to 127.0.0.1 starts and stops with the call.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from mtrec.data.files import missing_columns, plan_inputs, split_pieces
from mtrec.batch.options import BAD_ROWS, BATCH_SIZE, ON_BAD_ROWS, PRECISION, PRECISIONS, WORKERS
from mtrec.batch.scorer import BatchScorer, peak_rss_bytes
from mtrec.batch.writer import ScoreWriter
from mtrec.errors import DataError
from mtrec.checkpoint import read_manifest
from mtrec.quant.precision import require_fp32

MIB = 1 << 20


@dataclass
class BatchResult:
    """What a batch scoring run did: rows in, scored and rejected, files, seconds, per-worker figures, memory."""

    output: str
    rows: int
    scored: int
    rejected: int
    files: int
    seconds: float
    startup_s: float
    precision: str
    first_output_s: float = 0.0
    workers: list[dict[str, Any]] = field(default_factory=list)
    driver_peak_rss_bytes: int = 0
    driver_start_rss_bytes: int = 0

    @property
    def rows_per_s(self) -> float:
        """Input rows per second of scoring (Ray start-up excluded, actor start-up included)."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def scoring_rows_per_s(self) -> float:
        """Input rows per second of the busiest worker's scoring time (actor start-up and reading excluded)."""
        busy = max((w["busy_s"] for w in self.workers), default=0.0)
        return self.rows / busy if busy > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what summary.json holds)."""
        return {**asdict(self), "rows_per_s": self.rows_per_s, "scoring_rows_per_s": self.scoring_rows_per_s}

    def summary(self) -> str:
        """A few lines for people: totals, the row accounting, each worker, memory."""
        lines = [f"scored {self.rows:,} rows from {self.files} file(s) in {self.seconds:.1f} s "
                 f"({self.rows_per_s:,.0f} rows/s; {self.scoring_rows_per_s:,.0f} rows/s of scoring time; first "
                 f"block after {self.first_output_s:.1f} s; {len(self.workers)} worker(s), precision "
                 f"{self.precision}; Ray start {self.startup_s:.1f} s)",
                 f"  input rows {self.rows:,} = scored {self.scored:,} + rejected {self.rejected:,}: "
                 f"{'ok' if self.rows == self.scored + self.rejected else 'MISMATCH'}"]
        for w in self.workers:
            lines.append(f"  worker pid {w['pid']}: {w['rows']:,} rows, {w['rows_per_s']:,.0f} rows/s "
                         f"(scoring {w['busy_s']:.1f} s), peak RSS {w['peak_rss_bytes'] / MIB:,.0f} MiB "
                         f"({w['loaded_rss_bytes'] / MIB:,.0f} MiB with the model loaded)")
        lines.append(f"  driver peak RSS {self.driver_peak_rss_bytes / MIB:,.0f} MiB "
                     f"({self.driver_start_rss_bytes / MIB:,.0f} MiB when scoring started); output {self.output}")
        return "\n".join(lines)


@contextlib.contextmanager
def _data_context(buffer_bytes: int) -> Iterator[None]:
    """Ray Data settings for this run (restored after): input order kept, a bounded object-store budget, and no
    progress bars of its own (the driver shows one)."""
    from ray.data import DataContext, ExecutionResources

    ctx = DataContext.get_current()
    before = (ctx.execution_options.preserve_order, ctx.execution_options.resource_limits,
              ctx.enable_progress_bars, ctx.print_on_execution_start)
    ctx.execution_options.preserve_order = True
    ctx.execution_options.resource_limits = ExecutionResources.for_limits(object_store_memory=buffer_bytes)
    ctx.enable_progress_bars, ctx.print_on_execution_start = False, False
    try:
        yield
    finally:
        (ctx.execution_options.preserve_order, ctx.execution_options.resource_limits,
         ctx.enable_progress_bars, ctx.print_on_execution_start) = before


def _data_error_in(exc: BaseException) -> DataError | None:
    """The DataError a Ray failure carries (Ray wraps task errors), as a plain DataError; None if there is none."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        cause = getattr(e, "cause", None)
        if isinstance(e, DataError) and not isinstance(cause, BaseException):
            return DataError(str(e), column=e.column, row=e.row)
        stack.extend([cause if isinstance(cause, BaseException) else None, e.__cause__, e.__context__])
    return None


def _check_args(workers: int, batch_size: int, precision: str, on_bad_rows: str) -> None:
    if workers < 1 or batch_size < 1:
        raise ValueError(f"workers and batch_size must be >= 1, got {workers} and {batch_size}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if on_bad_rows not in BAD_ROWS:
        raise ValueError(f"on_bad_rows must be one of {', '.join(BAD_ROWS)}, got {on_bad_rows!r}")


def _require_columns(files: list[Any], needed: list[str]) -> None:
    """Refuse, before Ray starts, an input file that lacks a column the model reads."""
    for file in files:
        missing = missing_columns(file, needed)
        if missing:
            raise DataError(f"file {file.path!r}: column {missing[0]!r} is missing (row: all rows)",
                            column=missing[0])


def _write_blocks(ds: Any, writer: ScoreWriter, expected: int | None, fail: bool, progress: bool,
                  started: float) -> float | None:
    """Write the scored blocks as they stream back (with `fail`, the first rejected row raises its DataError);
    returns the seconds to the first block."""
    first_output = None
    with tqdm(total=expected, unit=" rows", unit_scale=True, desc="scoring", disable=not progress,
              smoothing=0.1) as bar:
        for block in ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=1):
            first_output = first_output or time.perf_counter() - started
            rejected = writer.write(block)
            if fail and rejected.num_rows:
                first = rejected.slice(0, 1).to_pylist()[0]
                raise DataError(first["reason"], column=first["column"], row=first["row"])
            bar.update(block.num_rows)
    return first_output


def _result_of(writer: ScoreWriter, files: int, expected: int | None, precision: str, start: float,
               started: float, first_output: float | None, start_rss: int) -> BatchResult:
    """The run's BatchResult, after checking that every input row came back."""
    seconds = time.perf_counter() - started
    if expected is not None and writer.ledger.rows != expected:
        raise RuntimeError(f"row accounting: the input files hold {expected:,} rows but "
                           f"{writer.ledger.rows:,} came back")
    result = BatchResult(str(writer.output), writer.ledger.rows, writer.scored, writer.rejected, files,
                         seconds, started - start, precision, first_output or seconds)
    result.workers = [{"pid": pid, **w, "rows_per_s": w["rows"] / seconds if seconds > 0 else 0.0}
                      for pid, w in sorted(writer.workers.items())]
    result.driver_peak_rss_bytes, result.driver_start_rss_bytes = peak_rss_bytes(), start_rss
    return result


def batch_predict(checkpoint: str | Path, inputs: str | Path, output: str | Path, workers: int = WORKERS,
                  batch_size: int = BATCH_SIZE, precision: str = PRECISION, id_column: str | None = None,
                  on_bad_rows: str = ON_BAD_ROWS, address: str | None = None, threads_per_worker: int | None = None,
                  progress: bool = True, overwrite: bool = False, rows_per_file: int = 1_000_000,
                  buffer_bytes: int = 256 * MIB) -> BatchResult:
    """Score every row of `inputs` (a Parquet/CSV file, a directory or a glob) with `checkpoint` on `workers`
    Ray Data actors and write `output/scores/part-*.parquet` (the id column, or file + row, and one probability
    per task). `on_bad_rows="fail"` stops at the first bad row with a DataError naming file, row and column and
    leaves no output; "skip" writes bad rows to `output/rejected.parquet` with the reason. The output directory
    appears only when complete. `precision`: auto (as saved), fp32, fp16, int8 or int4."""
    start = time.perf_counter()
    _check_args(workers, batch_size, precision, on_bad_rows)
    checkpoint = str(Path(checkpoint).resolve())
    manifest = read_manifest(checkpoint)
    require_fp32(precision, manifest.get("kind") == "quantized", checkpoint)
    tasks = list(manifest["tasks"])
    schema = manifest["schema"]
    needed = [*schema["sparse"], *schema["dense"], *([id_column] if id_column else [])]
    files = plan_inputs(inputs)
    if on_bad_rows == "fail":
        _require_columns(files, needed)
    pieces = split_pieces(files, rows_per_piece=max(batch_size, 262_144))
    paths = [f.path for f in files]
    expected = None if any(f.rows is None for f in files) else sum(f.rows or 0 for f in files)
    writer = ScoreWriter(output, paths, tasks, id_column, keep_rejected=on_bad_rows == "skip",
                         rows_per_file=rows_per_file, overwrite=overwrite)
    threads = threads_per_worker or max(1, (os.cpu_count() or 1) // workers)
    try:
        import ray.data

        from mtrec.data.ray_source import PiecesDatasource
        from mtrec.ray_session import ray_session

        with ray_session(address, num_cpus=max(os.cpu_count() or 1, workers + 1), dashboard=False), \
                _data_context(buffer_bytes):
            started, start_rss = time.perf_counter(), peak_rss_bytes()
            ds = ray.data.read_datasource(PiecesDatasource(files, pieces, needed, batch_size),
                                          override_num_blocks=max(1, len(pieces)), num_cpus=0.5)
            ds = ds.map_batches(BatchScorer, batch_size=None, batch_format="pyarrow",
                                compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1, fn_constructor_kwargs={
                                    "checkpoint": checkpoint, "precision": precision, "tasks": tasks,
                                    "id_column": id_column, "on_bad_rows": on_bad_rows, "paths": paths,
                                    "threads": threads})
            first_output = _write_blocks(ds, writer, expected, on_bad_rows == "fail", progress, started)
            result = _result_of(writer, len(files), expected, precision, start, started, first_output, start_rss)
            writer.commit(result.to_dict())
    except BaseException as exc:
        writer.abort()
        data_error = None if type(exc) is DataError else _data_error_in(exc)  # Ray's wrapper is a DataError too
        if data_error is not None:
            raise data_error from None
        raise
    if progress:
        print(result.summary(), flush=True)
    return result
