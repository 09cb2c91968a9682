"""Frozen representations computed once under torch.no_grad: held in memory when they fit, else streamed.

A new-task head reads only frozen tensors (input embedding, shared and task-specific representations, old
prompts), so they are computed once per frame and every epoch afterwards costs only the head. When the
cache would exceed `max_bytes`, the rows are instead recomputed chunk by chunk each epoch, still without
gradients, in the same (shuffled) order an in-memory cache would give.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mtrec.data.batches import EncodedFrame
from mtrec.models.inputs import network_inputs
from mtrec.tasks.freezing import frozen

Reps = dict[str, torch.Tensor]


def representations(network: nn.Module, batch_inputs: dict) -> Reps:
    """The encoder's representations of one batch (embedding -> encoder.representations)."""
    return network.encoder.representations(network.embedding(batch_inputs))


class RepresentationCache:
    """Per-row representations `keys` (+ batch-independent `constants`) of an encoded frame, and its labels."""

    def __init__(self, network: nn.Module, encoded: EncodedFrame, keys: tuple[str, ...],
                 constants: tuple[str, ...] = (), label_column: int = -1, chunk_rows: int = 8192,
                 max_bytes: int = 2 << 30, progress: bool = False) -> None:
        self.network, self.encoded, self.keys = network, encoded, tuple(keys)
        self.chunk_rows, self.progress = chunk_rows, progress
        self.labels = None if encoded.labels is None else encoded.labels[:, label_column].contiguous()
        first = self._compute(encoded.select(np.arange(min(len(encoded), chunk_rows))), tuple(constants))
        self.constants = {k: first.pop(k) for k in constants}
        row_bytes = sum(t[0].numel() * t.element_size() for t in first.values())
        self.in_memory = row_bytes * len(encoded) <= max_bytes
        self.rows: Reps = self._fill(first) if self.in_memory else {}

    def __len__(self) -> int:
        return len(self.encoded)

    def _compute(self, frame: EncodedFrame, constants: tuple[str, ...] = ()) -> Reps:
        """Representations `keys` (+ `constants`) of a whole (chunk) frame, without gradients, in eval mode."""
        with frozen(self.network), torch.no_grad():
            parts = [representations(self.network, network_inputs(b)) for b in frame.batches(self.chunk_rows)]
        out = {k: torch.cat([p[k] for p in parts]) if len(parts) > 1 else parts[0][k].contiguous() for k in self.keys}
        out.update({k: parts[0][k].detach().clone() for k in constants})
        return out

    def _fill(self, first: Reps) -> Reps:
        """Compute every chunk once into preallocated tensors."""
        n = len(self.encoded)
        rows = {k: torch.empty((n, *first[k].shape[1:]), dtype=first[k].dtype) for k in self.keys}
        done = len(first[self.keys[0]])
        for k in self.keys:
            rows[k][:done] = first[k]
        starts = range(done, n, self.chunk_rows)
        for start in tqdm(starts, desc="caching representations", disable=not self.progress, leave=False):
            stop = min(start + self.chunk_rows, n)
            chunk = self._compute(self.encoded.select(np.arange(start, stop)))
            for k in self.keys:
                rows[k][start:stop] = chunk[k]
        return rows

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False) -> Iterator[tuple[Reps, torch.Tensor | None]]:
        """(representations, new-task labels) batch by batch; a seeded permutation of all rows when shuffling."""
        n = len(self)
        order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
        stop = n - n % batch_size if drop_last else n
        if self.in_memory:
            order_t = torch.from_numpy(order)
            for start in range(0, stop, batch_size):
                idx = order_t[start:min(start + batch_size, stop)]
                pick = (lambda v: v.index_select(0, idx)) if shuffle else (lambda v: v[start:start + len(idx)])
                batch = {k: pick(v) for k, v in self.rows.items()}
                yield {**batch, **self.constants}, None if self.labels is None else pick(self.labels)
            return
        chunk = max(batch_size, self.chunk_rows - self.chunk_rows % batch_size)
        for lo in range(0, stop, chunk):
            idx = order[lo:min(lo + chunk, stop)]
            rows = self._compute(self.encoded.select(idx))
            labels = None if self.labels is None else self.labels.index_select(0, torch.from_numpy(idx))
            for start in range(0, len(idx), batch_size):
                batch = {k: rows[k][start:start + batch_size] for k in self.keys}
                yield {**batch, **self.constants}, None if labels is None else labels[start:start + batch_size]
