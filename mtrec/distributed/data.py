"""How rows split over workers and in what order each worker visits its shard, reproducibly from (seed, epoch).

Worker r of W owns rows r, r+W, r+2W, ... of a frame and reads only those. The global batch of `batch_size` rows is
W local batches of batch_size/W. Every worker runs the same number of steps per epoch (what the smallest shard
allows), so collectives stay in lockstep. A worker's epoch order is a permutation seeded by (seed + epoch, rank);
with one worker it is exactly the single-process loop's order, so workers=1 reproduces `mtrec.train`.
The "global" order instead gives every worker its slice of each single-process batch (verification runs).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from mtrec.data.batches import Batch, EncodedFrame


def shard_positions(rows: int, rank: int, world_size: int) -> np.ndarray:
    """Row positions worker `rank` owns."""
    return np.arange(rank, rows, world_size, dtype=np.int64)


def shard_frame(frame: pd.DataFrame, rank: int, world_size: int) -> pd.DataFrame:
    """Worker `rank`'s rows of `frame`."""
    return frame.iloc[shard_positions(len(frame), rank, world_size)]


def local_batch_size(batch_size: int, world_size: int) -> int:
    """Each worker's share of the global batch; the global batch must split evenly."""
    if batch_size % world_size:
        raise ValueError(f"batch_size {batch_size} does not split over {world_size} workers; "
                         f"use a multiple of {world_size}")
    return batch_size // world_size


def steps_per_epoch(rows: int, batch_size: int, world_size: int) -> int:
    """Optimizer steps per epoch: full local batches of the smallest shard (the same on every worker)."""
    return (rows // world_size) // local_batch_size(batch_size, world_size)


def epoch_order(shard_rows: int, seed: int, epoch: int, rank: int, world_size: int) -> np.ndarray:
    """The order worker `rank` visits its shard in `epoch` (the single-process order when world_size == 1)."""
    entropy = seed + epoch if world_size == 1 else [seed + epoch, rank]
    return np.random.default_rng(entropy).permutation(shard_rows)


def epoch_batches(shard: EncodedFrame, batch_size: int, world_size: int, rank: int, seed: int, epoch: int,
                  start: int, stop: int) -> Iterator[Batch]:
    """Local batches `start`..`stop`-1 of `epoch` on this worker (resuming mid-epoch skips without reading)."""
    local = local_batch_size(batch_size, world_size)
    order = epoch_order(len(shard), seed, epoch, rank, world_size)[start * local: stop * local]
    yield from shard.select(order).batches(local)


def global_steps_per_epoch(rows: int, batch_size: int) -> int:
    """Steps per epoch of the single-process loop (full global batches of the whole frame)."""
    return rows // batch_size


def global_epoch_batches(frame: EncodedFrame, batch_size: int, world_size: int, rank: int, seed: int, epoch: int,
                         start: int, stop: int) -> Iterator[Batch]:
    """This worker's slices of global batches `start`..`stop`-1 in the single-process loop's epoch order."""
    local = local_batch_size(batch_size, world_size)
    order = epoch_order(len(frame), seed, epoch, 0, 1)[start * batch_size: stop * batch_size]
    mine = order.reshape(stop - start, batch_size)[:, rank * local:(rank + 1) * local].reshape(-1)
    yield from frame.select(mine).batches(local)


def padded_positions(shard_rows: int, target_rows: int) -> np.ndarray:
    """Positions 0..shard_rows-1, padded to `target_rows` by repeating the last row (so ranks evaluate in lockstep)."""
    if shard_rows == 0:
        raise ValueError("an evaluation shard is empty: use fewer workers than validation rows")
    positions = np.arange(shard_rows, dtype=np.int64)
    return np.concatenate([positions, np.full(target_rows - shard_rows, shard_rows - 1, dtype=np.int64)])
