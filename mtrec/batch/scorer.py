"""The predictor actor of batch scoring: loads the checkpoint once (in the asked precision) and scores batches.

A batch comes with FILE and ROW columns (see `mtrec.data.ray_source`); rows are encoded per file with the row numbers
as the index, so a DataError names the file's own row. A bad row is never dropped silently: it comes back with
its reason and column (NaN probabilities), and the driver stops the job (`fail`) or writes it to rejected.parquet
(`skip`). With `skip` a batch that fails to encode is bisected until every bad row is isolated, so the good rows
of that batch are still scored in large groups. Every output row also carries the actor's process id, its peak
RSS (now, and once the model was loaded) and its cumulative scoring seconds, from which the driver reports
per-worker throughput and memory.
"""

from __future__ import annotations

import os
import resource
import time
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from mtrec.batch.options import PRECISIONS
from mtrec.data.files import FILE, ROW
from mtrec.errors import DataError

REASON, COLUMN = "__mtrec_reason", "__mtrec_column"
WORKER, PEAK_RSS, LOADED_RSS, BUSY = "__mtrec_worker", "__mtrec_peak_rss", "__mtrec_loaded_rss", "__mtrec_busy_s"


def load_for_scoring(checkpoint: str, precision: str | None = "auto") -> Any:
    """The checkpoint's model in `precision`: "auto" (or None) scores it as saved (a quantized checkpoint with its
    plan, an fp32 one in fp32); fp32/fp16/int8/int4 convert an fp32 checkpoint with one precision everywhere."""
    import mtrec
    from mtrec.quant.presets import with_precision

    if precision not in (None, *PRECISIONS):
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return with_precision(mtrec.load(checkpoint), precision)


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far, in bytes: VmHWM on Linux, which starts afresh at exec
    (getrusage's ru_maxrss does not: a child started from a big parent reports the parent's peak)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class BatchScorer:
    """Callable class for `Dataset.map_batches`: an Arrow block in, an Arrow table of probabilities (or reasons)
    out. The block is converted to pandas here, with numpy dtypes as `pd.read_parquet` gives them (Ray Data's own
    pandas conversion makes Arrow-backed columns)."""

    def __init__(self, checkpoint: str, precision: str | None, tasks: list[str], id_column: str | None,
                 on_bad_rows: str, paths: list[str], threads: int = 1) -> None:
        import torch  # here, not at module level: the driver imports this module and does not need torch

        from mtrec.quant import QuantizedModel
        from mtrec.quant.features import FastEncoder

        torch.set_num_threads(max(1, threads))
        self.model = load_for_scoring(checkpoint, precision)
        if list(self.model.tasks) != list(tasks):
            raise ValueError(f"checkpoint {checkpoint} predicts {self.model.tasks}, expected {tasks}")
        self.encoder = self.model.predictor.encoder if isinstance(self.model, QuantizedModel) \
            else FastEncoder(self.model.schema, self.model.vocabs)
        self.tasks, self.id_column, self.skip, self.paths = list(tasks), id_column, on_bad_rows == "skip", paths
        self.busy_s = 0.0
        self.loaded_rss = peak_rss_bytes()

    def __call__(self, block: pa.Table) -> pa.Table:
        start = time.perf_counter()
        batch = block.to_pandas()
        n = len(batch)
        probs = np.full((n, len(self.tasks)), np.nan, dtype=np.float32)
        reasons = np.full(n, None, dtype=object)
        columns = np.full(n, None, dtype=object)
        files = batch[FILE].to_numpy()
        cuts = np.flatnonzero(np.diff(files)) + 1
        for lo, hi in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [n]])):
            frame = batch.iloc[lo:hi].drop(columns=[FILE, ROW])
            frame.index = pd.Index(batch[ROW].to_numpy()[lo:hi])
            self._score(frame, int(lo), self.paths[int(files[lo])], probs, reasons, columns)
        self.busy_s += time.perf_counter() - start
        return self._table(batch, probs, reasons, columns)

    def _score(self, frame: pd.DataFrame, offset: int, path: str, probs: np.ndarray, reasons: np.ndarray,
               columns: np.ndarray) -> None:
        """Score `frame` (rows offset.. of the batch) into `probs`; a bad row gets its reason instead."""
        try:
            if self.id_column is not None and self.id_column not in frame.columns:
                raise DataError(f"id column {self.id_column!r} is missing (row: all rows)", column=self.id_column)
            encoded = self.encoder.encode(frame)
        except DataError as e:
            where = slice(offset, offset + len(frame))
            if e.row is not None and e.row in frame.index and not self.skip:
                where = slice(offset + frame.index.get_loc(e.row), offset + frame.index.get_loc(e.row) + 1)
            elif e.row is not None and len(frame) > 1:
                half = len(frame) // 2
                self._score(frame.iloc[:half], offset, path, probs, reasons, columns)
                self._score(frame.iloc[half:], offset + half, path, probs, reasons, columns)
                return
            reasons[where] = f"file {path!r}: {e}"
            columns[where] = e.column
            return
        probs[offset:offset + len(frame)] = self.model.predict_array(encoded)

    def _table(self, batch: pd.DataFrame, probs: np.ndarray, reasons: np.ndarray, columns: np.ndarray) -> pa.Table:
        """The output block: FILE, ROW, the id column, one float32 column per task, reason, column, worker stats."""
        n = len(batch)
        cols: dict[str, Any] = {FILE: pa.array(batch[FILE].to_numpy(), pa.int32()),
                                ROW: pa.array(batch[ROW].to_numpy(), pa.int64())}
        if self.id_column is not None:
            cols[self.id_column] = pa.array(batch[self.id_column]) if self.id_column in batch.columns \
                else pa.nulls(n)
        for i, task in enumerate(self.tasks):
            cols[task] = pa.array(probs[:, i], pa.float32())
        cols[REASON] = pa.array(reasons, pa.string())
        cols[COLUMN] = pa.array(columns, pa.string())
        cols[WORKER] = pa.array(np.full(n, os.getpid(), dtype=np.int64))
        cols[PEAK_RSS] = pa.array(np.full(n, peak_rss_bytes(), dtype=np.int64))
        cols[LOADED_RSS] = pa.array(np.full(n, self.loaded_rss, dtype=np.int64))
        cols[BUSY] = pa.array(np.full(n, self.busy_s, dtype=np.float64))
        return pa.table(cols)
