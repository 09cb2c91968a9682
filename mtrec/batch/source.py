"""A Ray Data datasource over the planned input pieces: streams blocks that carry each row's file and row number.

Ray Data's own Parquet/CSV readers do not say which row of which file a row was; batch scoring needs that to name
bad rows and to number output rows when there is no id column. Each read task streams one piece in blocks of at
most `block_rows` rows (Parquet: whole row groups, only the needed columns; CSV: pandas chunks), as Arrow tables
with two more columns: FILE (the file's index in the plan) and ROW (the row's number within its file, from 0).
A block never mixes files, so it is also the unit the predictor actors score (one call per block).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from ray.data.block import Block, BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from mtrec.batch.plan import FILE, ROW, InputFile, Piece
from mtrec.errors import DataError


def _numbered(table: pa.Table, file: int, first_row: int) -> pa.Table:
    """`table` with the FILE and ROW columns appended."""
    n = table.num_rows
    table = table.append_column(FILE, pa.array(np.full(n, file, dtype=np.int32)))
    return table.append_column(ROW, pa.array(np.arange(first_row, first_row + n, dtype=np.int64)))


def _parquet_blocks(file: InputFile, piece: Piece, columns: list[str], block_rows: int) -> Iterator[Block]:
    """Blocks of one Parquet piece with FILE and ROW added."""
    import pyarrow.parquet as pq

    reader = pq.ParquetFile(file.path)
    present = [c for c in columns if c in set(reader.schema_arrow.names)]
    row = piece.first_row
    for batch in reader.iter_batches(batch_size=block_rows, row_groups=list(piece.row_groups), columns=present):
        yield _numbered(pa.Table.from_batches([batch]), piece.file, row)
        row += batch.num_rows


def _csv_blocks(file: InputFile, piece: Piece, columns: list[str], block_rows: int) -> Iterator[Block]:
    """Blocks of one CSV file with FILE and ROW added (each chunk parsed whole, so a column has one type per
    block); DataError naming the file when it cannot be parsed."""
    row = 0
    try:
        header = pd.read_csv(file.path, nrows=0).columns
        usecols = [c for c in columns if c in set(header)]
        for chunk in pd.read_csv(file.path, usecols=usecols, chunksize=block_rows, low_memory=False):
            yield _numbered(pa.Table.from_pandas(chunk, preserve_index=False), piece.file, row)
            row += len(chunk)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, pa.ArrowException) as e:
        raise DataError(f"file {file.path!r}: cannot parse CSV after row {row}: {e}", row=row) from e


class PiecesDatasource(Datasource):
    """The planned pieces of the input files as a Ray Data datasource (one read task per piece)."""

    def __init__(self, files: list[InputFile], pieces: list[Piece], columns: list[str], block_rows: int) -> None:
        super().__init__()
        self.files, self.pieces, self.columns, self.block_rows = files, pieces, list(columns), block_rows

    def get_name(self) -> str:
        return "MtrecInput"

    def estimate_inmemory_data_size(self) -> int | None:
        sizes = [p.nbytes for p in self.pieces]
        return None if any(s is None for s in sizes) else int(sum(s or 0 for s in sizes))

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: Any = None) -> list[ReadTask]:
        tasks, columns, block_rows = [], self.columns, self.block_rows
        for piece in self.pieces:
            file = self.files[piece.file]
            read = _parquet_blocks if file.format == "parquet" else _csv_blocks
            meta = BlockMetadata(num_rows=piece.rows, size_bytes=piece.nbytes, input_files=[file.path],
                                 exec_stats=None)
            tasks.append(ReadTask(lambda f=file, p=piece, r=read: r(f, p, columns, block_rows), meta,
                                  per_task_row_limit=per_task_row_limit))
        return tasks
