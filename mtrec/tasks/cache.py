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
    """Per-row representations `keys` (+ batch-independent `constants`) of an encoded frame, and its labels.

    In memory, the rows are one contiguous float block [rows, width] (every key flattened side by side, then the
    label), so a shuffled batch is one index_select of one tensor and its representations are views into it."""

    def __init__(self, network: nn.Module, encoded: EncodedFrame, keys: tuple[str, ...],
                 constants: tuple[str, ...] = (), label_column: int = -1, chunk_rows: int = 8192,
                 max_bytes: int = 2 << 30, progress: bool = False) -> None:
        self.network, self.encoded, self.keys = network, encoded, tuple(keys)
        self.chunk_rows, self.progress = chunk_rows, progress
        self.labels = None if encoded.labels is None else encoded.labels[:, label_column].contiguous()
        first = self._compute(encoded.select(np.arange(min(len(encoded), chunk_rows))), tuple(constants))
        self.constants = {k: first.pop(k) for k in constants}
        self.shapes = {k: tuple(first[k].shape[1:]) for k in self.keys}
        widths = [int(np.prod(self.shapes[k])) for k in self.keys]
        self.offsets = dict(zip(self.keys, np.cumsum([0, *widths[:-1]]).tolist()))
        self.width = sum(widths)
        row_bytes = sum(t[0].numel() * t.element_size() for t in first.values())
        self.in_memory = row_bytes * len(encoded) <= max_bytes
        self.block = self._fill(first) if self.in_memory else None

    def __len__(self) -> int:
        return len(self.encoded)

    @property
    def rows(self) -> Reps:
        """Every cached row, per key (views into the block); empty when streamed."""
        return {} if self.block is None else self._views(self.block)

    def _views(self, block: torch.Tensor) -> Reps:
        """Per-key views [B, *shape] into rows of a block (same layout as the cache's)."""
        return {k: block[:, o:o + int(np.prod(self.shapes[k]))].view(len(block), *self.shapes[k])
                for k, o in self.offsets.items()}

    def _compute(self, frame: EncodedFrame, constants: tuple[str, ...] = ()) -> Reps:
        """Representations `keys` (+ `constants`) of a whole (chunk) frame, without gradients, in eval mode."""
        with frozen(self.network), torch.no_grad():
            parts = [representations(self.network, network_inputs(b)) for b in frame.batches(self.chunk_rows)]
        out = {k: torch.cat([p[k] for p in parts]) if len(parts) > 1 else parts[0][k].contiguous() for k in self.keys}
        out.update({k: parts[0][k].detach().clone() for k in constants})
        return out

    def _pack(self, reps: Reps, out: torch.Tensor) -> None:
        """Write a chunk's representations into rows `out` of a block."""
        for k, o in self.offsets.items():
            out[:, o:o + int(np.prod(self.shapes[k]))] = reps[k].reshape(len(out), -1)

    def _fill(self, first: Reps) -> torch.Tensor:
        """Compute every chunk once, straight into one preallocated block (labels in its last column)."""
        n = len(self.encoded)
        dtype = first[self.keys[0]].dtype
        block = torch.empty((n, self.width + (self.labels is not None)), dtype=dtype)
        done = len(first[self.keys[0]])
        self._pack(first, block[:done])
        starts = range(done, n, self.chunk_rows)
        for start in tqdm(starts, desc="caching representations", disable=not self.progress, leave=False):
            stop = min(start + self.chunk_rows, n)
            self._pack(self._compute(self.encoded.select(np.arange(start, stop))), block[start:stop])
        if self.labels is not None:
            block[:, -1] = self.labels
        return block

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False) -> Iterator[tuple[Reps, torch.Tensor | None]]:
        """(representations, new-task labels) batch by batch; a seeded permutation of all rows when shuffling."""
        n = len(self)
        order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
        stop = n - n % batch_size if drop_last else n
        if self.block is not None:
            order_t = torch.from_numpy(order)
            for start in range(0, stop, batch_size):
                end = min(start + batch_size, stop)
                rows = self.block.index_select(0, order_t[start:end]) if shuffle else self.block[start:end]
                yield {**self._views(rows), **self.constants}, None if self.labels is None else rows[:, -1]
            return
        chunk = max(batch_size, self.chunk_rows - self.chunk_rows % batch_size)
        for lo in range(0, stop, chunk):
            idx = order[lo:min(lo + chunk, stop)]
            rows = self._compute(self.encoded.select(idx))
            labels = None if self.labels is None else self.labels.index_select(0, torch.from_numpy(idx))
            for start in range(0, len(idx), batch_size):
                batch = {k: rows[k][start:start + batch_size] for k in self.keys}
                yield {**batch, **self.constants}, None if labels is None else labels[start:start + batch_size]
