"""Input files (of training, validation and batch scoring): which files to read, their format and row counts, and
how to split them into pieces.

An input is a file, a directory of Parquet/CSV files, a glob, or a list of any of these. Parquet files are split
into pieces of whole row groups (their row counts come from the footer, so the first row of every piece is known
before anything is read); a CSV file is one piece whose rows are counted as they stream.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from mtrec.data.io import CSV_SUFFIXES, PARQUET_SUFFIXES
from mtrec.errors import DataError

FILE = "__mtrec_file"  # column added to every block read: the file's index in the plan
ROW = "__mtrec_row"  # and the row's number within its file, from 0


@dataclass(frozen=True)
class InputFile:
    """One input file: its path, format ("parquet" or "csv"), rows (None for CSV), row-group sizes in rows and
    their uncompressed bytes."""

    path: str
    format: str
    rows: int | None
    row_groups: tuple[int, ...] = ()
    group_bytes: tuple[int, ...] = ()


@dataclass(frozen=True)
class Piece:
    """A unit of reading: file `file` (index into the plan's files), its row groups, the first row's number, and
    its rows and uncompressed bytes (None for CSV)."""

    file: int
    row_groups: tuple[int, ...]
    first_row: int
    rows: int | None
    nbytes: int | None = None


def format_of(path: str) -> str:
    """"parquet" or "csv" from the file name; DataError otherwise."""
    name = path.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    raise DataError(f"cannot tell the format of {path!r}: use .parquet/.pq or .csv files")


def find_inputs(source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    """The input files of a file, a directory (its Parquet/CSV files, sorted) or a glob (sorted), or of a list of
    those (in the list's order); DataError when there are none."""
    if isinstance(source, (list, tuple)):
        if not source:
            raise DataError("an empty list of input files")
        return [f for item in source for f in find_inputs(item)]
    text = str(source)
    path = Path(source)
    if path.is_dir():
        files = sorted(str(p) for p in path.rglob("*") if p.is_file() and not p.name.startswith((".", "_"))
                       and p.name.lower().endswith(PARQUET_SUFFIXES + CSV_SUFFIXES))
    elif any(ch in text for ch in "*?[") and not path.exists():
        files = sorted(f for f in glob.glob(text, recursive=True) if Path(f).is_file())
    elif path.is_file():
        files = [text]
    else:
        raise DataError(f"no such file or directory: {text!r}")
    if not files:
        raise DataError(f"no Parquet or CSV files in {text!r}")
    return [str(Path(f).resolve()) for f in files]


def describe(path: str) -> InputFile:
    """Format and (for Parquet, from the footer) row counts of one file; DataError when it cannot be read."""
    fmt = format_of(path)
    if fmt == "csv":
        return InputFile(path, fmt, None)
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path).metadata
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ... for unreadable files
        raise DataError(f"cannot read Parquet file {path!r}: {type(e).__name__}: {e}") from e
    groups = [meta.row_group(i) for i in range(meta.num_row_groups)]
    return InputFile(path, fmt, meta.num_rows, tuple(g.num_rows for g in groups),
                     tuple(g.total_byte_size for g in groups))


def plan_inputs(source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[InputFile]:
    """Every input file of `source`, described."""
    return [describe(f) for f in find_inputs(source)]


def missing_columns(file: InputFile, needed: list[str]) -> list[str]:
    """The `needed` columns a Parquet file lacks (always [] for CSV, whose header is read with the rows)."""
    if file.format != "parquet":
        return []
    import pyarrow.parquet as pq

    names = set(pq.read_schema(file.path).names)
    return [c for c in needed if c not in names]


def split_pieces(files: list[InputFile], rows_per_piece: int) -> list[Piece]:
    """Pieces of about `rows_per_piece` rows (whole row groups) in file and row order; a CSV file is one piece."""
    pieces: list[Piece] = []
    for index, file in enumerate(files):
        if file.format == "csv":
            pieces.append(Piece(index, (), 0, None))
            continue
        first, groups, rows, nbytes = 0, [], 0, 0
        for g, size in enumerate(file.row_groups):
            if groups and rows + size > rows_per_piece:
                pieces.append(Piece(index, tuple(groups), first, rows, nbytes))
                first, groups, rows, nbytes = first + rows, [], 0, 0
            groups.append(g)
            rows += size
            nbytes += file.group_bytes[g]
        if groups:
            pieces.append(Piece(index, tuple(groups), first, rows, nbytes))
    return pieces


def numbered(table: pa.Table, file: int, first_row: int) -> pa.Table:
    """`table` with the FILE and ROW columns appended."""
    n = table.num_rows
    table = table.append_column(FILE, pa.array(np.full(n, file, dtype=np.int32)))
    return table.append_column(ROW, pa.array(np.arange(first_row, first_row + n, dtype=np.int64)))


def without_rows(block: pa.Table, rows: np.ndarray | None) -> tuple[pa.Table, int]:
    """(`block` without the rows whose ROW number is in the sorted array `rows`, how many were dropped)."""
    if rows is None or not len(rows) or not block.num_rows:
        return block, 0
    drop = np.isin(block.column(ROW).to_numpy(), rows, assume_unique=True)
    return (block.filter(pa.array(~drop)), int(drop.sum())) if drop.any() else (block, 0)


def _parquet_blocks(file: InputFile, piece: Piece, columns: list[str], block_rows: int,
                    pre_buffer: bool) -> Iterator[pa.Table]:
    """Blocks of one Parquet piece with FILE and ROW added."""
    import pyarrow.parquet as pq

    reader = pq.ParquetFile(file.path, pre_buffer=pre_buffer)
    present = [c for c in columns if c in set(reader.schema_arrow.names)]
    row = piece.first_row
    for batch in reader.iter_batches(batch_size=block_rows, row_groups=list(piece.row_groups), columns=present):
        yield numbered(pa.Table.from_batches([batch]), piece.file, row)
        row += batch.num_rows


def _csv_blocks(file: InputFile, piece: Piece, columns: list[str], block_rows: int) -> Iterator[pa.Table]:
    """Blocks of one CSV file with FILE and ROW added (each chunk parsed whole, so a column has one type per
    block); DataError naming the file when it cannot be parsed."""
    row = 0
    try:
        header = pd.read_csv(file.path, nrows=0).columns
        usecols = [c for c in columns if c in set(header)]
        for chunk in pd.read_csv(file.path, usecols=usecols, chunksize=block_rows, low_memory=False):
            yield numbered(pa.Table.from_pandas(chunk, preserve_index=False), piece.file, row)
            row += len(chunk)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, pa.ArrowException) as e:
        raise DataError(f"file {file.path!r}: cannot parse CSV after row {row}: {e}", row=row) from e


def piece_blocks(file: InputFile, piece: Piece, columns: list[str], block_rows: int,
                 pre_buffer: bool = False) -> Iterator[pa.Table]:
    """Arrow blocks of at most `block_rows` rows of one piece (only `columns` that the file has), each with the
    FILE and ROW columns appended; a block never mixes files. `pre_buffer` reads a Parquet file's column chunks in
    few large requests (faster on remote storage, but it holds them: more memory)."""
    if file.format == "parquet":
        return _parquet_blocks(file, piece, columns, block_rows, pre_buffer)
    return _csv_blocks(file, piece, columns, block_rows)
