"""The output side of batch scoring: part files written as results stream in, rejected rows, row accounting, and
the rename that makes an output directory appear only when it is complete.

Everything is written under a hidden sibling directory `.<name>.tmp-<pid>-<id>`; `commit` publishes it at the
output path after the accounting checks out (mtrec.outputs: atomic, replacing only an earlier scores directory and
only with overwrite, never an input), `abort` removes it. A job killed midway leaves only the hidden directory
(removed by the next job writing there), never something at the output path that looks finished. Layout of a
finished output:

    DIR/scores/part-00000.parquet ...   id column (or file + row) and one float32 probability per task
    DIR/rejected.parquet                `skip` only: file, row, [id], column, reason of every rejected row
    DIR/summary.json                    rows, files, seconds, rows/s, per-worker figures
"""

from __future__ import annotations

import fnmatch
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mtrec.batch.scorer import BUSY, COLUMN, LOADED_RSS, PEAK_RSS, REASON, WORKER
from mtrec.data.files import FILE, ROW
from mtrec.outputs import check_output, publish, refuse_inputs, temporary_for

SCORES, REJECTED, SUMMARY = "scores", "rejected.parquet", "summary.json"


def foreign_to_scores(path: Path) -> str | None:
    """What in directory `path` is not part of a batch-scoring output (None: only summary.json, rejected.parquet
    and scores/part-*.parquet), so replacing it loses nothing."""
    if not (path / SUMMARY).is_file():
        return f"no {SUMMARY}"
    for entry in path.iterdir():
        expected_dir = entry.name == SCORES
        if entry.is_symlink() or entry.name not in (SCORES, REJECTED, SUMMARY) or entry.is_dir() != expected_dir:
            return f"it holds {entry.name!r}"
    for part in (path / SCORES).iterdir():
        if part.is_symlink() or not part.is_file() or not fnmatch.fnmatchcase(part.name, "part-*.parquet"):
            return f"it holds {SCORES}/{part.name}"
    return None


class RowLedger:
    """Checks that every input row arrives exactly once, in order, file by file; counts rows per file."""

    def __init__(self, files: int) -> None:
        self.next_row = np.zeros(files, dtype=np.int64)

    def see(self, files: np.ndarray, rows: np.ndarray) -> None:
        """Record a block's (file, row) pairs; RuntimeError when a row is missing or repeated."""
        cuts = np.flatnonzero(np.diff(files)) + 1
        for lo, hi in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [len(files)]])):
            f = int(files[lo])
            expected = np.arange(self.next_row[f], self.next_row[f] + hi - lo)
            if not np.array_equal(rows[lo:hi], expected):
                raise RuntimeError(f"row accounting: file #{f} jumped from row {self.next_row[f]} to "
                                   f"{int(rows[lo])}; rows were lost or repeated")
            self.next_row[f] += hi - lo

    @property
    def rows(self) -> int:
        """Input rows seen so far."""
        return int(self.next_row.sum())


class ScoreWriter:
    """Writes scored and rejected rows into a temporary directory and renames it to `output` on commit."""

    def __init__(self, output: str | Path, paths: list[str], tasks: list[str], id_column: str | None,
                 keep_rejected: bool, rows_per_file: int = 1_000_000, row_group_rows: int = 131_072,
                 overwrite: bool = False) -> None:
        refuse_inputs(output, paths)
        self.output, self.overwrite = check_output(output, overwrite, foreign_to_scores), overwrite
        self.tmp = temporary_for(self.output)
        (self.tmp / SCORES).mkdir()
        self.paths = pa.array(paths, pa.string())
        self.tasks, self.id_column, self.keep_rejected = list(tasks), id_column, keep_rejected
        self.rows_per_file, self.row_group_rows = rows_per_file, row_group_rows
        self.ledger = RowLedger(len(paths))
        self.scored = self.rejected = 0
        self.workers: dict[int, dict[str, float]] = {}
        self._parts: list[pa.Table] = []
        self._buffered = self._in_file = self._file_index = 0
        self._writer: pq.ParquetWriter | None = None
        self._rejected: pq.ParquetWriter | None = None

    def _keys(self, block: pa.Table) -> dict[str, pa.Array]:
        """The row key columns: the id column, or the input file (dictionary-encoded path) and row number."""
        if self.id_column is not None:
            return {self.id_column: block.column(self.id_column)}
        return {"file": pa.DictionaryArray.from_arrays(block.column(FILE).combine_chunks(), self.paths),
                "row": block.column(ROW)}

    def write(self, block: pa.Table) -> pa.Table:
        """Account for one scored block and write it; returns its rejected rows (file, row, [id], column, reason)."""
        self.ledger.see(block.column(FILE).to_numpy(), block.column(ROW).to_numpy())
        self._note_workers(block)
        bad = block.column(REASON).is_valid()
        good = block.filter(pc.invert(bad))
        rejected = block.filter(bad)
        if good.num_rows:
            self.scored += good.num_rows
            self._parts.append(pa.table({**self._keys(good), **{t: good.column(t) for t in self.tasks}}))
            self._buffered += good.num_rows
            if self._buffered >= self.row_group_rows:
                self._flush()
        rows = pa.table({"file": pa.DictionaryArray.from_arrays(rejected.column(FILE).combine_chunks(), self.paths)
                         .cast(pa.string()), "row": rejected.column(ROW),
                         **({self.id_column: rejected.column(self.id_column)} if self.id_column else {}),
                         "column": rejected.column(COLUMN), "reason": rejected.column(REASON)})
        if rows.num_rows:
            self.rejected += rows.num_rows
            if self.keep_rejected:
                if self._rejected is None:
                    self._rejected = pq.ParquetWriter(self.tmp / REJECTED, rows.schema)
                self._rejected.write_table(rows)
        return rows

    def _note_workers(self, block: pa.Table) -> None:
        """Per worker: rows, peak RSS (once loaded and overall) and scoring seconds (cumulative values: the latest
        is the largest)."""
        workers = block.column(WORKER).to_numpy()
        stats = {"peak_rss_bytes": block.column(PEAK_RSS).to_numpy(),
                 "loaded_rss_bytes": block.column(LOADED_RSS).to_numpy(), "busy_s": block.column(BUSY).to_numpy()}
        for pid in np.unique(workers):
            mask = workers == pid
            w = self.workers.setdefault(int(pid), {"rows": 0, "peak_rss_bytes": 0, "loaded_rss_bytes": 0,
                                                   "busy_s": 0.0})
            w["rows"] += int(mask.sum())
            for key, values in stats.items():
                w[key] = max(w[key], values[mask].max().item())

    def _flush(self) -> None:
        """Write the buffered scored rows as one row group, opening the next part file when one is full."""
        if not self._parts:
            return
        table = pa.concat_tables(self._parts)
        self._parts, self._buffered = [], 0
        if self._writer is not None and self._in_file >= self.rows_per_file:
            self._writer.close()
            self._writer, self._in_file = None, 0
        if self._writer is None:
            path = self.tmp / SCORES / f"part-{self._file_index:05d}.parquet"
            self._writer = pq.ParquetWriter(path, table.schema)
            self._file_index += 1
        self._writer.write_table(table)
        self._in_file += table.num_rows

    def _close(self) -> None:
        for writer in (self._writer, self._rejected):
            if writer is not None:
                writer.close()
        self._writer = self._rejected = None

    def commit(self, summary: dict[str, Any]) -> Path:
        """Check the accounting, write the last rows and summary.json, and rename into place; returns the output."""
        if self.ledger.rows != self.scored + self.rejected:
            raise RuntimeError(f"row accounting: {self.ledger.rows:,} input rows but {self.scored:,} scored + "
                               f"{self.rejected:,} rejected")
        self._flush()
        if self._file_index == 0:
            key = {self.id_column: pa.null()} if self.id_column else {"file": pa.string(), "row": pa.int64()}
            empty = pa.schema({**key, **{t: pa.float32() for t in self.tasks}})
            pq.write_table(empty.empty_table(), self.tmp / SCORES / "part-00000.parquet")
        if self.keep_rejected and self._rejected is None:
            key = {self.id_column: pa.null()} if self.id_column else {}
            empty = pa.schema({"file": pa.string(), "row": pa.int64(), **key, "column": pa.string(),
                               "reason": pa.string()})
            self._rejected = pq.ParquetWriter(self.tmp / REJECTED, empty)
        self._close()
        (self.tmp / SUMMARY).write_text(json.dumps(summary, indent=2))
        return publish(self.tmp, self.output, self.overwrite, foreign_to_scores)

    def abort(self) -> None:
        """Remove everything written so far."""
        self._close()
        shutil.rmtree(self.tmp, ignore_errors=True)
