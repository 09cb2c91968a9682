"""Cached frozen representations plus the raw input of the same rows, for heads that read both (task_embedding)."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from mtrec.data.batches import EncodedFrame
from mtrec.models.heads import raw_inputs
from mtrec.models.inputs import network_inputs
from mtrec.tasks.cache import Reps, RepresentationCache


class RawInputCache:
    """A RepresentationCache whose batches also carry the rows' raw sparse KJT and dense features.

    Both sides draw the same seeded permutation (numpy default_rng(seed).permutation over all rows), so the
    cached representations and the raw batches are the same rows in the same order."""

    def __init__(self, cache: RepresentationCache, encoded: EncodedFrame) -> None:
        if len(cache) != len(encoded):
            raise ValueError(f"RawInputCache: {len(cache)} cached rows but {len(encoded)} encoded rows")
        self.cache, self.encoded = cache, encoded
        self.labels, self.in_memory = cache.labels, cache.in_memory

    def __len__(self) -> int:
        return len(self.cache)

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False) -> Iterator[tuple[Reps, torch.Tensor | None]]:
        """(representations + raw inputs, labels) batch by batch, as RepresentationCache.batches."""
        cached = self.cache.batches(batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)
        raw = self.encoded.batches(batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)
        for (reps, labels), batch in zip(cached, raw, strict=True):
            yield {**reps, **raw_inputs(network_inputs(batch))}, labels
