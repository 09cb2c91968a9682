"""DataFrame -> TorchRec batches: a frame is encoded once into arrays, then sliced into batches cheaply."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor
from torchrec.streamable import Pipelineable

from mtrec.data.schema import Schema
from mtrec.data.stream import to_columns
from mtrec.data.validation import check_frame
from mtrec.data.vocab import Vocabularies
from mtrec.errors import DataError


@dataclass
class Batch(Pipelineable):
    """One batch: sparse ids as a KJT (keys = schema.sparse), standardized dense [B, D] and labels [B, T]."""

    sparse: KeyedJaggedTensor
    dense: torch.Tensor
    labels: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.dense.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """The batch on `device` (TorchRec pipelines call this)."""
        labels = None if self.labels is None else self.labels.to(device, non_blocking=non_blocking)
        return Batch(self.sparse.to(device, non_blocking=non_blocking),
                     self.dense.to(device, non_blocking=non_blocking), labels)

    def record_stream(self, stream: torch.Stream) -> None:
        """Mark every tensor as used on `stream` (for TorchRec's CUDA train pipelines)."""
        self.sparse.record_stream(stream)
        self.dense.record_stream(stream)
        if self.labels is not None:
            self.labels.record_stream(stream)

    def pin_memory(self) -> Batch:
        """The batch in pinned host memory, for fast host-to-GPU copies."""
        labels = None if self.labels is None else self.labels.pin_memory()
        return Batch(self.sparse.pin(), self.dense.pin_memory(), labels)


@dataclass
class _Jagged:
    """Encoded ids of one multi-valued feature: concatenated ids, offsets (n+1, numpy) and lengths (int32)."""

    ids: torch.Tensor
    offsets: np.ndarray
    lengths: torch.Tensor


class EncodedFrame:
    """A whole frame encoded once (ids, standardized dense, labels as tensors); batches are cheap slices.

    Single-valued ids sit in one [num_single, rows] tensor (one gather per shuffle, one copy per batch);
    multi-valued ids are jagged (ids + offsets).
    """

    def __init__(self, keys: list[str], single: torch.Tensor, jagged: dict[str, _Jagged], dense: torch.Tensor,
                 labels: torch.Tensor | None, tasks: list[str], index: pd.Index,
                 groups: np.ndarray | None = None) -> None:
        self.keys, self.single, self.jagged, self.dense = keys, single, jagged, dense
        self.labels, self.tasks, self.index = labels, tasks, index
        self.groups = groups  # each row's user as an id 0..G-1 (per-user metrics), when the schema names one
        self._layout: list[tuple[str, int]] = []
        j = 0
        for k in keys:
            self._layout.append((k, -1 if k in jagged else j))
            j += k not in jagged
        self._ones = torch.ones(0, dtype=torch.int32)

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        return (f"EncodedFrame(rows={len(self)}, sparse={self.keys}, dense={self.dense.shape[1]}, "
                f"tasks={self.tasks if self.labels is not None else []})")

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False) -> Iterator[Batch]:
        """Batches of `batch_size` rows in order, or in a seeded random order (one permutation per call)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        frame = self.select(np.random.default_rng(seed).permutation(len(self))) if shuffle else self
        n = len(frame)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            yield frame._slice(start, min(start + batch_size, n))

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        """How many batches batches(batch_size, drop_last=...) yields."""
        return len(self) // batch_size if drop_last else -(-len(self) // batch_size)

    def labels_array(self) -> np.ndarray:
        """All labels as a float32 numpy array [rows, tasks] (for metrics); DataError when none were encoded."""
        if self.labels is None:
            raise DataError(f"this frame was encoded without labels (label columns {self.tasks or 'absent'}); "
                            "encode it with require_labels=True", column=None)
        return self.labels.numpy()

    def take(self, idx: np.ndarray | Sequence[int]) -> Batch:
        """One batch of the rows at positions `idx` (in that order)."""
        return self.select(idx)._slice(0, len(idx))

    def select(self, idx: np.ndarray | Sequence[int]) -> EncodedFrame:
        """A new EncodedFrame of the rows at positions `idx` (vectorized gathers, jagged features included)."""
        idx = np.asarray(idx, dtype=np.int64)
        if idx.ndim != 1:
            raise ValueError(f"idx must be 1-D positions, got shape {idx.shape}")
        if len(idx) and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"row positions must be in [0, {len(self)}), got {idx.min()}..{idx.max()}")
        idx = np.where(idx < 0, idx + len(self), idx)
        tidx = torch.from_numpy(idx)
        jagged = {}
        for k, f in self.jagged.items():
            starts, lens = f.offsets[idx], f.lengths.numpy()[idx].astype(np.int64)
            offsets, gather = _runs(starts, lens)
            jagged[k] = _Jagged(f.ids.index_select(0, torch.from_numpy(gather)), offsets,
                                f.lengths.index_select(0, tidx))
        labels = None if self.labels is None else self.labels.index_select(0, tidx)
        return EncodedFrame(self.keys, self.single.index_select(1, tidx), jagged, self.dense.index_select(0, tidx),
                            labels, self.tasks, self.index[idx], None if self.groups is None else self.groups[idx])

    def _slice(self, start: int, stop: int) -> Batch:
        """Rows [start, stop) as a Batch, keys in schema order (key-major values)."""
        b = stop - start
        if len(self._ones) < b * max(len(self.keys), 1):
            self._ones = torch.ones(b * max(len(self.keys), 1), dtype=torch.int32)
        if not self.jagged:
            values = self.single[:, start:stop].reshape(-1).contiguous()
            lengths, per_key = self._ones[: b * len(self.keys)], [b] * len(self.keys)
        else:
            pieces, lens, per_key = [], [], []
            for k, j in self._layout:
                if j >= 0:
                    pieces.append(self.single[j, start:stop])
                    lens.append(self._ones[:b])
                    per_key.append(b)
                else:
                    f = self.jagged[k]
                    lo, hi = int(f.offsets[start]), int(f.offsets[stop])
                    pieces.append(f.ids[lo:hi])
                    lens.append(f.lengths[start:stop])
                    per_key.append(hi - lo)
            values, lengths = torch.cat(pieces), torch.cat(lens)
        kjt = KeyedJaggedTensor(keys=self.keys, values=values, lengths=lengths, stride=b, length_per_key=per_key)
        labels = None if self.labels is None else self.labels[start:stop]
        return Batch(kjt, self.dense[start:stop], labels)


def encode_frame(df: pd.DataFrame, schema: Schema, vocabs: Vocabularies, tasks: Sequence[str] | None = None,
                 require_labels: bool = True, flat: Mapping[str, tuple[np.ndarray, pd.Series]] | None = None
                 ) -> EncodedFrame:
    """Validate `df` and encode it once; with require_labels=False labels are encoded only if all are present.
    `flat`: multi-valued columns already flattened (check_frame's `flat`), which `df` need not hold."""
    tasks = list(schema.tasks if tasks is None else tasks)
    lists, label_cols = check_frame(df, schema, tasks, require_labels, flat)
    missing = [f for f in schema.sparse if not vocabs.has(f)] or [f for f in schema.dense
                                                                      if f not in vocabs.dense_stats]
    if missing:
        raise DataError(f"column {missing[0]!r} has no fitted vocabulary/statistics; fit Vocabularies on "
                        "training data with the same schema", column=missing[0])
    n = len(df)
    singles = schema.single_valued
    single = np.empty((len(singles), n), dtype=np.int64)
    for j, f in enumerate(singles):
        single[j] = vocabs.encode(f, df[f])
    jagged = {}
    for f, (lengths, values) in lists.items():
        ids = vocabs.encode(schema.vocabulary_of(f), values)
        max_len = _max_len_of(schema, f)
        if max_len is not None:
            lengths, ids = keep_newest(lengths, ids, max_len)
        jagged[f] = _Jagged(torch.from_numpy(ids), np.concatenate([[0], np.cumsum(lengths)]),
                            torch.from_numpy(lengths.astype(np.int32)))
    if schema.dense:
        dense = np.empty((n, len(schema.dense)), dtype=np.float32)
        for j, f in enumerate(schema.dense):
            dense[:, j] = vocabs.standardize(f, df[f])
    else:
        dense = np.zeros((n, 0), dtype=np.float32)
    labels = None
    if label_cols:  # none asked for (predict) or none present: no labels tensor, not an empty [n, 0] one
        labels = torch.from_numpy(np.ascontiguousarray(df[label_cols].to_numpy(dtype=np.float32)))
    groups = user_groups(df[schema.user]) if schema.user is not None and schema.user in df.columns else None
    return EncodedFrame(list(schema.sparse), torch.from_numpy(single), jagged, torch.from_numpy(dense), labels,
                        list(label_cols or []), df.index, groups)


def encode_table(table: pa.Table, schema: Schema, vocabs: Vocabularies, tasks: Sequence[str] | None = None,
                 require_labels: bool = True) -> EncodedFrame:
    """An Arrow block (a streamed window) validated and encoded as encode_frame does its frame, the list columns
    flattened by Arrow instead of row by row (mtrec.data.stream.to_columns)."""
    frame, flat = to_columns(table, schema.multi_valued)
    return encode_frame(frame, schema, vocabs, tasks, require_labels, flat)


def user_groups(users: Any) -> np.ndarray:
    """Raw user values as group ids 0..G-1 (per-user metrics; missing values form one group)."""
    return pd.factorize(pd.Series(users), use_na_sentinel=False)[0].astype(np.int64)


def _max_len_of(schema: Schema, feature: str) -> int | None:
    """The kept length of a sequence column or of a sequence's action column; None for other features."""
    for name, f in schema.sequences.items():
        if feature in (name, f.actions):
            return f.max_len
    return None


def keep_newest(lengths: np.ndarray, values: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Truncate each row's list (oldest first) to its newest `max_len` values; vectorized over rows."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if len(lengths) == 0 or lengths.max(initial=0) <= max_len:
        return lengths, values
    kept = np.minimum(lengths, max_len)
    _, gather = _runs(np.cumsum(lengths) - kept, kept)
    return kept, values[gather]


def _runs(starts: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (n+1) of the concatenated runs [start, start + len) and the flat positions they gather."""
    offsets = np.concatenate([[0], np.cumsum(lens)])
    return offsets, np.repeat(starts - offsets[:-1], lens) + np.arange(offsets[-1])
