"""Where a worker's training batches come from: its shard of a frame, its range of a scanned file stream read with
pyarrow (local processes), or its split of a Ray Data dataset (Ray Train's `get_dataset_shard`).

Every feed gives local batches `start`..`stop`-1 of an epoch, and every rank of a run gets the same number of them
per epoch (lockstep collectives). Each is a pure function of (seed, epoch, rank), so a worker resumed at batch k
of an epoch gets exactly the batches a run that never stopped would have taken from k on:
- a frame shard: a permutation seeded by (seed + epoch, rank) (mtrec.distributed.data);
- a file stream: rank r reads the r-th of W equal contiguous ranges of the epoch's piece order, shuffled inside
  windows (mtrec.data.stream.FileStream.windows), and starts reading at the window holding batch k;
- a Ray Data split: `streaming_split(W, equal=True)` with the input order preserved hands each rank the same
  rows // W rows in the same order every epoch (its dispatch is deterministic without locality hints); a local
  shuffle buffer seeded by (seed, epoch, rank) varies the order per epoch. Ray Data restarts an epoch from its
  first row after a failure and has no skip, so a resumed worker reads and drops the batches before k (reading
  is cheap next to encoding and training; they are not encoded). The rows a rank received are counted, and an
  epoch that did not get exactly rows // W rows fails the run (RuntimeError) instead of training on a wrong split.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any, Protocol

import numpy as np
import pandas as pd

from mtrec.data.batches import Batch
from mtrec.data.stream import FileStream
from mtrec.distributed.data import epoch_batches, global_epoch_batches, local_batch_size
from mtrec.model import MultiTaskModel

ENCODE_ROWS = 65_536  # rows a Ray Data feed takes and encodes at once (whole local batches)


class Feed(Protocol):
    """A rank's training batches."""

    def batches(self, epoch: int, start: int, stop: int) -> Iterator[Batch]:
        """Local batches `start`..`stop`-1 of `epoch`."""


@dataclass
class Placement:
    """Who this rank is in the run and how it batches: global batch, world size, rank, seed."""

    batch_size: int
    world_size: int
    rank: int
    seed: int

    @property
    def local(self) -> int:
        """This rank's share of the global batch."""
        return local_batch_size(self.batch_size, self.world_size)


class FrameFeed:
    """Batches of this rank's encoded frame shard (or of the whole frame in the "global" data order)."""

    def __init__(self, model: MultiTaskModel, shard: pd.DataFrame, place: Placement, global_order: bool) -> None:
        self.encoded, self.place, self.global_order = model.encode(shard), place, global_order

    def batches(self, epoch: int, start: int, stop: int) -> Iterator[Batch]:
        """Local batches start..stop-1 (resuming mid-epoch skips without reading)."""
        p = self.place
        make = global_epoch_batches if self.global_order else epoch_batches
        return make(self.encoded, p.batch_size, p.world_size, p.rank, p.seed, epoch, start, stop)


class StreamFeed:
    """Batches of this rank's range of a scanned file stream, read with pyarrow window by window."""

    def __init__(self, model: MultiTaskModel, stream: FileStream, place: Placement, shuffle: bool) -> None:
        self.model, self.stream, self.place, self.shuffle = model, stream, place, shuffle

    def batches(self, epoch: int, start: int, stop: int) -> Iterator[Batch]:
        """Local batches start..stop-1: reading starts at the window that holds batch `start`."""
        p = self.place
        left = stop - start
        windows = self.stream.windows(p.local, p.seed, epoch, p.rank, p.world_size, start=start, shuffle=self.shuffle)
        for table, skip in windows:
            for batch in islice(self.model.encode_table(table).batches(p.local, drop_last=True), skip, None):
                if left == 0:
                    return
                left -= 1
                yield batch
            if left == 0:
                return


class RayDataFeed:
    """Batches of this rank's split of a Ray Data dataset (a DataIterator from `ray.train.get_dataset_shard`)."""

    def __init__(self, model: MultiTaskModel, shard: Any, place: Placement, rows: int, shuffle_buffer: int) -> None:
        self.model, self.shard, self.place = model, shard, place
        self.expected = rows // place.world_size  # what streaming_split(equal=True) gives every rank
        self.shuffle_buffer = shuffle_buffer
        self.received: dict[int, int] = {}  # epoch -> rows received (whole epochs only)

    def batches(self, epoch: int, start: int, stop: int) -> Iterator[Batch]:
        """Local batches start..stop-1; the batches before `start` are read and dropped, not encoded."""
        p = self.place
        take = max(1, ENCODE_ROWS // p.local) * p.local
        shuffle = {"local_shuffle_buffer_size": self.shuffle_buffer,
                   "local_shuffle_seed": int(np.random.SeedSequence([p.seed, epoch, p.rank]).generate_state(1)[0])
                   } if self.shuffle_buffer else {}
        whole = stop >= self.expected // p.local  # an epoch cut short (max_steps) is not read to its end
        rows, index = 0, 0  # rows received so far, index of the next local batch
        for table in self.shard.iter_batches(batch_size=take, batch_format="pyarrow", prefetch_batches=1, **shuffle):
            if index >= stop and not whole:
                return
            rows += table.num_rows
            full = table.num_rows // p.local
            if index + full <= start or index >= stop:
                index += full
                continue
            first = max(0, start - index)
            for batch in islice(self.model.encode_table(table).batches(p.local, drop_last=True), first,
                                stop - index):
                yield batch
            index += full
        if rows != self.expected:
            raise RuntimeError(f"row accounting: rank {p.rank} received {rows:,} rows of epoch {epoch} from Ray Data, "
                               f"expected {self.expected:,} (rows // workers)")
        self.received[epoch] = rows
