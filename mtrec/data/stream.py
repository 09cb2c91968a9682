"""Training data that is not a frame: Parquet/CSV files read as a stream, in bounded memory.

A `FileSource` (a file, directory, glob or list of them) is first *scanned*: one pass in file order that validates
every row (a bad row fails the run with a DataError naming file, row and column before any training step, or is
skipped: written to rejected.parquet and counted), counts the good rows of every piece (CSV files too) and, when
the model has no vocabularies yet, fits them on the way (mtrec.data.vocab.VocabFitter). The result, a
`FileStream`, is small and picklable: files, pieces (whole Parquet row groups), the good-row count of each piece
and the bad rows' numbers. Everything an epoch reads then follows from (seed, epoch, rank, world size):

- the epoch's row order: the pieces in a permutation seeded by (seed, epoch) (`shuffle_files`), each piece's good
  rows in file order, then a local shuffle inside consecutive windows of `shuffle_buffer` rows (each window
  permuted by a generator seeded by (seed, epoch, rank, window)). The trade-off: rows only meet rows of the same
  window, so a bigger buffer is closer to a full shuffle and holds more rows in memory (a window is decoded and
  encoded at once: ~100 bytes a row for 8 features);
- rank r of W reads the r-th of W equal contiguous ranges of that order (disjoint, the same length on every rank,
  so every rank takes the same number of steps: (good rows // W) // local batch);
- a window is a whole number of batches, so batch k of an epoch is found without reading the batches before it:
  a resumed run starts reading at the window that holds batch k.

Only one window (plus one Arrow block being read) is held at a time. Validation streams do the same without the
shuffle, each rank reading an equal contiguous range padded by repeating its last row (so ranks stay in lockstep).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mtrec.data.files import (FILE, ROW, InputFile, Piece, piece_blocks, plan_inputs, split_pieces,
                              without_rows)
from mtrec.data.schema import Schema
from mtrec.data.validation import check_frame
from mtrec.errors import DataError

BAD_ROWS = ("fail", "skip")
REJECTED = "rejected.parquet"


@dataclass(frozen=True)
class StreamOptions:
    """How file sources are read: the local shuffle buffer (rows; 0 = none), whether the piece order is permuted
    per epoch, the rows decoded at a time, what a bad row does ("fail" or "skip"), and the vocabulary fit
    (`vocab_sample`: the fraction of read blocks the vocabularies are fitted on, all by default)."""

    shuffle_buffer: int = 262_144
    shuffle_files: bool = True
    read_rows: int = 65_536
    on_bad_rows: str = "fail"
    vocab_sample: float = 1.0
    rejected_path: str | None = None  # where skipped rows go (default: rejected.parquet in the run's directory)

    def __post_init__(self) -> None:
        if self.on_bad_rows not in BAD_ROWS:
            raise ValueError(f"on_bad_rows: expected one of {', '.join(BAD_ROWS)}, got {self.on_bad_rows!r}")
        if self.shuffle_buffer < 0 or self.read_rows < 1:
            raise ValueError(f"need shuffle_buffer >= 0 and read_rows >= 1, got {self.shuffle_buffer}, "
                             f"{self.read_rows}")
        if not 0 < self.vocab_sample <= 1:
            raise ValueError(f"vocab_sample must be in (0, 1], got {self.vocab_sample}")



class RejectedRows:
    """Writes rejected rows (split, file, row, column, reason) to one Parquet file as they are found."""

    SCHEMA = pa.schema({"split": pa.string(), "file": pa.string(), "row": pa.int64(), "column": pa.string(),
                        "reason": pa.string()})

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows = 0
        self._writer: Any = None

    def add(self, split: str, file: str, rows: Sequence[int], columns: Sequence[str | None],
            reasons: Sequence[str]) -> None:
        """Append rejected rows of one file."""
        import pyarrow.parquet as pq

        if not len(rows):
            return
        table = pa.table({"split": [split] * len(rows), "file": [file] * len(rows), "row": list(rows),
                          "column": list(columns), "reason": list(reasons)}, schema=self.SCHEMA)
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.path, self.SCHEMA)
        self._writer.write_table(table)
        self.rows += len(rows)

    def close(self) -> None:
        """Finish the file (an empty one when nothing was rejected, so a skip run always leaves it)."""
        import pyarrow.parquet as pq

        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(self.SCHEMA.empty_table(), self.path)
        else:
            self._writer.close()
            self._writer = None


@dataclass
class ReadCounts:
    """What a reader did in one epoch: rows it yielded in batches and rows the scan had rejected that it dropped."""

    rows: int = 0
    dropped: int = 0


@dataclass
class FileStream:
    """A scanned file source (picklable): files, pieces, good rows per piece, bad row numbers per file."""

    files: list[InputFile]
    pieces: list[Piece]
    good: np.ndarray  # good rows of each piece
    bad: dict[int, np.ndarray]  # file index -> sorted row numbers the scan rejected
    columns: list[str]
    options: StreamOptions
    rejected_path: str | None = None
    raw_rows: int = 0

    @property
    def rows(self) -> int:
        """Good rows (what training reads)."""
        return int(self.good.sum())

    @property
    def rejected(self) -> int:
        """Rows the scan rejected."""
        return int(sum(len(b) for b in self.bad.values()))

    def describe(self) -> str:
        """'N rows in K files (P pieces)'."""
        return f"{self.rows:,} rows in {len(self.files)} file(s) ({len(self.pieces)} pieces)"

    # orders and ranges ---------------------------------------------------------------------------
    def piece_order(self, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
        """The pieces in the order epoch `epoch` reads them: permuted by (seed, epoch), or in file order."""
        if shuffle and self.options.shuffle_files:
            return np.random.default_rng([seed, epoch, 7]).permutation(len(self.pieces))
        return np.arange(len(self.pieces))

    def steps(self, batch_size: int, world_size: int = 1) -> int:
        """Batches of `batch_size` rows each rank takes per epoch (ranks own rows // world_size rows each)."""
        return (self.rows // world_size) // batch_size

    def window_rows(self, batch_size: int, shuffle: bool) -> int:
        """Rows of one window: the shuffle buffer (or read_rows) rounded up to whole batches."""
        rows = self.options.shuffle_buffer if shuffle and self.options.shuffle_buffer else self.options.read_rows
        return max(1, -(-rows // batch_size)) * batch_size

    # reading -------------------------------------------------------------------------------------
    def good_blocks(self, p: int, counts: ReadCounts | None = None) -> Iterator[pa.Table]:
        """Piece `p`'s good rows in blocks (FILE and ROW columns included)."""
        piece = self.pieces[p]
        file = self.files[piece.file]
        bad = self.bad.get(piece.file)
        for block in piece_blocks(file, piece, self.columns, self.options.read_rows):
            block, dropped = without_rows(block, bad)
            if counts is not None:
                counts.dropped += dropped
            if block.num_rows:
                yield block

    def rows_between(self, order: np.ndarray, lo: int, hi: int, counts: ReadCounts | None = None
                     ) -> Iterator[pa.Table]:
        """Good rows [lo, hi) of the stream of pieces in `order`, in blocks (pieces before `lo` are not read)."""
        if hi <= lo:
            return
        ends = np.cumsum(self.good[order])
        i = int(np.searchsorted(ends, lo, side="right"))
        skip = lo - (int(ends[i - 1]) if i else 0)
        remaining = hi - lo
        for p in order[i:]:
            for block in self.good_blocks(int(p), counts):
                if skip >= block.num_rows:
                    skip -= block.num_rows
                    continue
                block = block.slice(skip)
                skip = 0
                take = min(remaining, block.num_rows)
                yield block.slice(0, take)
                remaining -= take
                if remaining == 0:
                    return
        if remaining:
            raise DataError(f"the input files hold fewer good rows than their scan counted ({remaining:,} missing); "
                            "were they changed during training?")

    def windows(self, batch_size: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1, start: int = 0,
                shuffle: bool = True, counts: ReadCounts | None = None) -> Iterator[tuple[pa.Table, int]]:
        """(window as an Arrow table, batches to skip at its front) for this rank's batches from `start` on: every
        window is a whole number of batches, shuffled by (seed, epoch, rank, window) when `shuffle`."""
        per_rank = self.rows // world_size
        usable = (per_rank // batch_size) * batch_size
        size = self.window_rows(batch_size, shuffle)
        first = (start * batch_size) // size
        lo = rank * per_rank
        blocks = self.rows_between(self.piece_order(seed, epoch, shuffle), lo + first * size, lo + usable, counts)
        carry: list[pa.Table] = []
        for w in range(first, -(-usable // size)):
            need = min(size, usable - w * size)
            parts, have = carry, sum(t.num_rows for t in carry)
            carry = []
            while have < need:
                block = next(blocks)
                parts.append(block)
                have += block.num_rows
            table = _concat(parts)
            if have > need:
                carry = [table.slice(need)]
                table = table.slice(0, need)
            if shuffle and self.options.shuffle_buffer:
                table = table.take(np.random.default_rng([seed, epoch, rank, w]).permutation(table.num_rows))
            skip = start - (w * size) // batch_size if w == first else 0
            if counts is not None:
                counts.rows += table.num_rows - skip * batch_size
            yield table, skip

    def eval_windows(self, rank: int = 0, world_size: int = 1) -> tuple[Iterator[pa.Table], int, int]:
        """(Arrow tables of this rank's validation rows in order, real rows, rows with padding): ranks read equal
        contiguous ranges, the last ones padded by repeating a row so every rank evaluates the same count."""
        target = -(-self.rows // world_size)
        lo, hi = min(rank * target, self.rows), min((rank + 1) * target, self.rows)

        def frames() -> Iterator[pa.Table]:
            size = self.window_rows(1, shuffle=False)
            order = self.piece_order(0, 0, shuffle=False)
            last = None
            pending: list[pa.Table] = []
            have = 0
            for block in self.rows_between(order, lo, hi):
                pending.append(block)
                have += block.num_rows
                if have >= size:
                    last = _concat(pending)
                    pending, have = [], 0
                    yield last
            if pending:
                last = _concat(pending)
                yield last
            pad = target - (hi - lo)
            if pad:
                if last is None:  # an empty range: pad with the stream's first row
                    last = next(self.rows_between(order, 0, 1))
                yield last.take(np.full(pad, last.num_rows - 1))

        return frames(), hi - lo, target


def _concat(tables: list[pa.Table]) -> pa.Table:
    """Blocks as one table; files whose column types differ (int8 labels in one, doubles in another) are promoted
    to a common type."""
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="permissive")


def to_frame(table: pa.Table) -> pd.DataFrame:
    """An Arrow block as the pandas frame the encoder reads: numpy dtypes as pd.read_parquet gives them, indexed by
    row number within its file, without the FILE/ROW columns."""
    frame = table.drop_columns([c for c in (FILE, ROW) if c in table.column_names]).to_pandas()
    if ROW in table.column_names:
        frame.index = pd.Index(table.column(ROW).to_numpy())
    return frame


def to_columns(table: pa.Table, multi: Sequence[str]) -> tuple[pd.DataFrame, dict[str, tuple[np.ndarray, pd.Series]]]:
    """An Arrow block as the frame of its scalar columns (to_frame) and its list-typed `multi` columns flattened
    by Arrow into (lengths, values), as check_frame's `flat` takes them: no Python object per row. A multi-valued
    column that is not an Arrow list stays in the frame (check_frame names what is wrong with it)."""
    lists = [c for c in multi if c in table.column_names
             and (pa.types.is_list(table.schema.field(c).type) or pa.types.is_large_list(table.schema.field(c).type))]
    flat = {}
    for c in lists:
        column = table.column(c)
        lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy().astype(np.int64)
        values = pc.list_flatten(column)
        flat[c] = (lengths, values.to_pandas() if len(values) else pd.Series(np.zeros(0, dtype=np.int64)))
    return to_frame(table.drop_columns(lists)), flat


@dataclass
class FileSource:
    """Parquet/CSV files given as a path, directory, glob or list: planned (row counts from Parquet footers), not
    yet read."""

    files: list[InputFile]
    label: str = ""

    @classmethod
    def of(cls, source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> FileSource:
        """Plan the files of `source` (DataError when there are none or one cannot be read)."""
        label = ", ".join(map(str, source)) if isinstance(source, (list, tuple)) else str(source)
        return cls(plan_inputs(source), label)

    @property
    def rows(self) -> int | None:
        """Rows in the files from the Parquet footers (None when a CSV file's rows are not known before reading)."""
        if any(f.rows is None for f in self.files):
            return None
        return int(sum(f.rows or 0 for f in self.files))

    def head(self, rows: int = 10_000) -> pd.DataFrame:
        """The first `rows` rows of the first file, as pandas reads them (for schema inference)."""
        file = self.files[0]
        piece = split_pieces([file], rows)[0]
        table = next(piece_blocks(file, piece, _all_columns(file), rows))
        return to_frame(table).head(rows)

    def scan(self, schema: Schema, tasks: Sequence[str], options: StreamOptions, fitter: Any = None,
             rejected: RejectedRows | None = None, split: str = "train", progress: bool = False) -> FileStream:
        """Validate every row, count good rows per piece and (with a VocabFitter) fit vocabularies, in one pass."""
        from tqdm.auto import tqdm

        columns = [*schema.features(), *[t for t in tasks if t not in schema.features()]]
        for file in self.files:
            missing = _missing(file, columns)
            if missing and options.on_bad_rows == "fail":
                raise DataError(f"file {file.path!r}: column {missing[0]!r} is missing (row: all rows)",
                                column=missing[0])
        pieces = split_pieces(self.files, options.read_rows)
        good = np.zeros(len(pieces), dtype=np.int64)
        bad: dict[int, list[np.ndarray]] = {}
        raw = 0
        sampler = np.random.default_rng([17])
        with tqdm(total=self.rows, unit=" rows", unit_scale=True, desc=f"scanning {split}", disable=not progress,
                  leave=False) as bar:
            for p, piece in enumerate(pieces):
                file = self.files[piece.file]
                for block in piece_blocks(file, piece, columns, options.read_rows):
                    raw += block.num_rows
                    frame, flat, rejects = _checked(block, schema, tasks, file.path, options.on_bad_rows)
                    if rejects:
                        rows_, cols, reasons = zip(*rejects)
                        bad.setdefault(piece.file, []).append(np.asarray(rows_, dtype=np.int64))
                        if rejected is not None:
                            rejected.add(split, file.path, rows_, cols, reasons)
                    good[p] += len(frame)
                    if fitter is not None and len(frame) and (options.vocab_sample >= 1
                                                              or sampler.random() < options.vocab_sample):
                        fitter.add(frame, flat)
                    bar.update(len(block))
        stream = FileStream(self.files, pieces, good, {f: np.sort(np.concatenate(b)) for f, b in bad.items()},
                            columns, options, str(rejected.path) if rejected is not None else None, raw)
        if stream.rows == 0:
            raise DataError(f"no {split} rows to train on in {self.label!r}"
                            + (f" ({stream.rejected:,} rejected)" if stream.rejected else ""))
        return stream


def _all_columns(file: InputFile) -> list[str]:
    """Every column of a file (Parquet: from its schema; CSV: its header)."""
    if file.format == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(file.path).names)
    return list(pd.read_csv(file.path, nrows=0).columns)


def _missing(file: InputFile, columns: list[str]) -> list[str]:
    have = set(_all_columns(file))
    return [c for c in columns if c not in have]


def _checked(block: pa.Table, schema: Schema, tasks: Sequence[str], path: str, on_bad_rows: str
             ) -> tuple[pd.DataFrame, dict[str, tuple[np.ndarray, pd.Series]], list[tuple[int, str | None, str]]]:
    """(good rows, their flattened multi-valued columns, rejected (row, column, reason)) of one block; with
    on_bad_rows="fail" the first bad row raises a DataError naming the file, row and column."""
    try:
        frame, flat = to_columns(block, schema.multi_valued)
        flat, _ = check_frame(frame, schema, list(tasks), require_labels=True, flat=flat)
        return frame, flat, []
    except DataError as e:
        if on_bad_rows == "fail":
            raise DataError(f"file {path!r}: {e}", column=e.column, row=e.row) from None
    frame = to_frame(block)  # rows are looked for one by one in the frame with its lists as Python objects
    rejects = _bad_rows(frame, schema, tasks)
    bad_rows = {r for r, _, _ in rejects}
    good = frame[~frame.index.isin(list(bad_rows))]
    flat = check_frame(good, schema, list(tasks), require_labels=True)[0] if len(good) else {}
    return good, flat, rejects


def _bad_rows(frame: pd.DataFrame, schema: Schema, tasks: Sequence[str]) -> list[tuple[int, str | None, str]]:
    """The rows of `frame` that fail validation, with column and reason: halves are checked recursively, so a few
    bad rows among many cost a few validations each; a problem of the whole block (a missing column) rejects it."""
    try:
        check_frame(frame, schema, list(tasks), require_labels=True)
        return []
    except DataError as e:
        if e.row is None or len(frame) == 1:
            return [(int(r), e.column, str(e)) for r in frame.index]
        half = len(frame) // 2
        return _bad_rows(frame.iloc[:half], schema, tasks) + _bad_rows(frame.iloc[half:], schema, tasks)


def take_options(cls: Any, options: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Split keyword options into an options dataclass `cls` (its fields, None meaning default) and the rest."""
    names = {f.name for f in dataclasses.fields(cls)}
    mine = {k: v for k, v in options.items() if k in names and v is not None}
    return cls(**mine), {k: v for k, v in options.items() if k not in names}


def epoch_accounting(stream: FileStream, trained: int, batch_size: int, world_size: int = 1) -> dict[str, int]:
    """An epoch's row accounting: the source's rows = trained + rejected + unused, where unused (rows of the
    remainder that make no full batch on every rank) must be fewer than a global batch plus one row per rank;
    RuntimeError otherwise (rows lost, or applied twice)."""
    total, rejected = stream.raw_rows, stream.rejected
    unused = total - trained - rejected
    if not 0 <= unused < batch_size + world_size:
        raise RuntimeError(f"row accounting: {total:,} rows read but {trained:,} trained + {rejected:,} rejected "
                           f"leaves {unused:,} unused (expected 0 .. {batch_size + world_size - 1})")
    return {"rows": total, "trained": trained, "rejected": rejected, "unused": unused}


def is_file_source(source: Any) -> bool:
    """Whether `source` names files (a path, or a list of paths) rather than holding rows (a frame)."""
    if isinstance(source, (str, os.PathLike)):
        return True
    return isinstance(source, (list, tuple)) and bool(source) and all(isinstance(s, (str, os.PathLike))
                                                                       for s in source)


def is_dataset(source: Any) -> bool:
    """Whether `source` is a `ray.data.Dataset` (checked without importing Ray Data)."""
    return any(f"{c.__module__}.{c.__name__}" == "ray.data.dataset.Dataset" for c in type(source).__mro__)


__all__ = ["BAD_ROWS", "REJECTED", "FileSource", "FileStream", "ReadCounts", "RejectedRows", "StreamOptions",
           "epoch_accounting", "is_dataset", "is_file_source", "take_options", "to_columns", "to_frame"]
