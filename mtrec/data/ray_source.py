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

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from mtrec.data.files import InputFile, Piece, piece_blocks, without_rows
from mtrec.data.schema import Schema
from mtrec.data.stream import FileStream, StreamOptions, to_columns
from mtrec.data.validation import check_frame
from mtrec.errors import DataError


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


def stream_dataset(stream: FileStream | DatasetStream) -> Any:
    """A scanned stream's good rows as a `ray.data.Dataset` (one read task per piece, in file order; a scanned
    Dataset is itself)."""
    import ray.data

    if isinstance(stream, DatasetStream):
        return stream.dataset

    source = PiecesDatasource(stream.files, stream.pieces, stream.columns, stream.options.read_rows, stream.bad,
                              [int(g) for g in stream.good])
    return ray.data.read_datasource(source, override_num_blocks=max(1, len(stream.pieces)), num_cpus=0.5)


@dataclass
class DatasetStream:
    """A `ray.data.Dataset` scanned like a file stream: every row validated (a bad row fails the run naming its
    position), rows counted and vocabularies fitted in one pass; each epoch reads it again through `iter_batches`
    with a local shuffle buffer seeded by (seed, epoch). In a process it is read in one order (world size 1); Ray
    Train workers get their splits of the dataset itself (mtrec.distributed.feeds.RayDataFeed)."""

    dataset: Any
    rows: int
    options: StreamOptions
    files: list[Any] = field(default_factory=list)
    rejected: int = 0

    @property
    def raw_rows(self) -> int:
        """Rows of the dataset (a Dataset's rows are all good: a bad one fails the scan)."""
        return self.rows

    @classmethod
    def scan(cls, dataset: Any, schema: Schema, tasks: Sequence[str], options: StreamOptions, fitter: Any = None,
             split: str = "train") -> DatasetStream:
        """Validate and count every row (and fit vocabularies with a VocabFitter), in one pass."""
        if options.on_bad_rows != "fail":
            raise DataError(f"on_bad_rows={options.on_bad_rows!r} needs files (a Dataset's rows have no file and row "
                            "to record); validate the Dataset first or use on_bad_rows='fail'")
        columns = [*schema.features(), *[t for t in tasks if t not in schema.features()]]
        missing = [c for c in columns if c not in dataset.columns()]
        if missing:
            raise DataError(f"{split} dataset: column {missing[0]!r} is missing", column=missing[0])
        ordered = type(dataset).copy(dataset.select_columns(columns), _deep_copy=True)  # its own DataContext
        ordered.context.execution_options.preserve_order = True  # the same rows in the same order every read
        rows = 0
        for table in ordered.iter_batches(batch_size=options.read_rows, batch_format="pyarrow"):
            frame, flat = to_columns(table, schema.multi_valued)
            frame.index = pd.RangeIndex(rows, rows + len(frame))
            try:
                flat, _ = check_frame(frame, schema, list(tasks), require_labels=True, flat=flat)
            except DataError as e:
                raise DataError(f"{split} dataset: {e}", column=e.column, row=e.row) from None
            if fitter is not None:
                fitter.add(frame, flat)
            rows += len(frame)
        if rows == 0:
            raise DataError(f"no {split} rows to train on in the dataset")
        return cls(ordered, rows, options)

    def steps(self, batch_size: int, world_size: int = 1) -> int:
        """Batches of `batch_size` rows each rank takes per epoch."""
        return (self.rows // world_size) // batch_size

    def windows(self, batch_size: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1, start: int = 0,
                shuffle: bool = True, counts: Any = None) -> Iterator[tuple[pa.Table, int]]:
        """(window as an Arrow table, batches to skip at its front) from batch `start` on, in this process (world
        size 1)."""
        if world_size != 1:
            raise ValueError("a ray.data.Dataset trains in one process or on Ray Train workers (launcher='ray')")
        usable = (self.rows // batch_size) * batch_size
        size = max(1, -(-self.options.read_rows // batch_size)) * batch_size
        buffer = self.options.shuffle_buffer if shuffle else 0
        shuffling = {"local_shuffle_buffer_size": buffer,
                     "local_shuffle_seed": int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
                     } if buffer else {}
        done = 0  # rows of the epoch's order passed so far
        for table in self.dataset.iter_batches(batch_size=size, batch_format="pyarrow", **shuffling):
            table = table.slice(0, usable - done)
            first = done // batch_size
            done += table.num_rows
            n = table.num_rows // batch_size
            if first + n > start and table.num_rows:
                skip = max(0, start - first)
                if counts is not None:
                    counts.rows += (n - skip) * batch_size
                yield table, skip
            if done >= usable:
                return
