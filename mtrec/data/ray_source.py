"""A Ray Data datasource over the planned input pieces: streams blocks that carry each row's file and row number.

Ray Data's own Parquet/CSV readers do not say which row of which file a row was; batch scoring needs that to name
bad rows and to number output rows when there is no id column. Each read task streams one piece in blocks of at
most `block_rows` rows (Parquet: whole row groups, only the needed columns; CSV: pandas chunks), as Arrow tables
with two more columns: FILE (the file's index in the plan) and ROW (the row's number within its file, from 0).
A block never mixes files, so it is also the unit the predictor actors score (one call per block). Given the row
numbers a scan rejected (`bad`: file index -> sorted row numbers), read tasks drop those rows: training on a
scanned stream (mtrec.data.stream.FileStream) reads exactly its good rows, in piece order.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from mtrec.data.files import InputFile, Piece, piece_blocks, without_rows
from mtrec.data.stream import FileStream


class PiecesDatasource(Datasource):
    """The planned pieces of the input files as a Ray Data datasource (one read task per piece)."""

    def __init__(self, files: list[InputFile], pieces: list[Piece], columns: list[str], block_rows: int,
                 bad: Mapping[int, np.ndarray] | None = None, good: list[int] | None = None) -> None:
        super().__init__()
        self.files, self.pieces, self.columns, self.block_rows = files, pieces, list(columns), block_rows
        self.bad, self.good = dict(bad or {}), good

    def get_name(self) -> str:
        return "MtrecInput"

    def estimate_inmemory_data_size(self) -> int | None:
        sizes = [p.nbytes for p in self.pieces]
        return None if any(s is None for s in sizes) else int(sum(s or 0 for s in sizes))

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: Any = None) -> list[ReadTask]:
        tasks, columns, block_rows = [], self.columns, self.block_rows
        for i, piece in enumerate(self.pieces):
            file = self.files[piece.file]
            rows = piece.rows if self.good is None else self.good[i]
            meta = BlockMetadata(num_rows=rows, size_bytes=piece.nbytes, input_files=[file.path], exec_stats=None)
            bad = self.bad.get(piece.file)
            tasks.append(ReadTask(lambda f=file, p=piece, b=bad: _read(f, p, columns, block_rows, b), meta,
                                  per_task_row_limit=per_task_row_limit))
        return tasks


def _read(file: InputFile, piece: Piece, columns: list[str], block_rows: int, bad: np.ndarray | None
          ) -> Iterator[pa.Table]:
    """One read task: the piece's blocks without the rejected rows (empty blocks left out)."""
    for block in piece_blocks(file, piece, columns, block_rows, pre_buffer=True):
        block, _ = without_rows(block, bad)
        if block.num_rows:
            yield block


def stream_dataset(stream: FileStream) -> Any:
    """A scanned stream's good rows as a `ray.data.Dataset` (one read task per piece, in file order)."""
    import ray.data

    source = PiecesDatasource(stream.files, stream.pieces, stream.columns, stream.options.read_rows, stream.bad,
                              [int(g) for g in stream.good])
    return ray.data.read_datasource(source, override_num_blocks=max(1, len(stream.pieces)), num_cpus=0.5)
