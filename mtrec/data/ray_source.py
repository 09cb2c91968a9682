"""A Ray Data datasource over the planned input pieces: streams blocks that carry each row's file and row number.

Ray Data's own Parquet/CSV readers do not say which row of which file a row was; batch scoring needs that to name
bad rows and to number output rows when there is no id column. Each read task streams one piece in blocks of at
most `block_rows` rows (Parquet: whole row groups, only the needed columns; CSV: pandas chunks), as Arrow tables
with two more columns: FILE (the file's index in the plan) and ROW (the row's number within its file, from 0).
A block never mixes files, so it is also the unit the predictor actors score (one call per block).
"""

from __future__ import annotations

from typing import Any

from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from mtrec.data.files import InputFile, Piece, piece_blocks


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
            meta = BlockMetadata(num_rows=piece.rows, size_bytes=piece.nbytes, input_files=[file.path],
                                 exec_stats=None)
            tasks.append(ReadTask(lambda f=file, p=piece: piece_blocks(f, p, columns, block_rows, pre_buffer=True), meta,
                                  per_task_row_limit=per_task_row_limit))
        return tasks
