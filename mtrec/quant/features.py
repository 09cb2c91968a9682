"""Fast preprocessing for serving: clean frames are encoded with numpy gathers, anything else by the data layer.

The data layer's `encode_frame` validates every column with pandas, which costs more than the quantized network
itself on a small batch. Here a frame whose columns are plainly clean (integer ids >= 0 for integer
vocabularies, all-string ids for string vocabularies, finite numbers for dense features, single-valued sparse
features only) is encoded directly: integer ids by the vocabulary's sorted-key binary search, strings by one
dict lookup each, hashed features by the stable hash, dense values standardized in one expression. The result
is identical to `encode_frame`'s. Every other frame (missing or duplicate columns, NaN ids, floats, lists, wrong
types...) goes through `encode_frame`, so errors are the data layer's `DataError`s, word for word.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from mtrec.data.batches import EncodedFrame, encode_frame
from mtrec.data.schema import Schema
from mtrec.data.vocab import Vocabularies


class FastEncoder:
    """Encodes clean frames with vectorized lookups; falls back to `encode_frame` for everything else."""

    def __init__(self, schema: Schema, vocabs: Vocabularies) -> None:
        self.schema, self.vocabs = schema, vocabs
        self.int_ids: set[str] = set()
        self.str_ids: dict[str, dict[str, int]] = {}
        self.hashed = set(vocabs.hashed)
        for f in schema.sparse:
            if f in self.hashed:
                continue
            values = vocabs.values.get(f, np.zeros(0, dtype=np.int64))
            if len(values) and values.dtype.kind == "i":
                self.int_ids.add(f)
            elif len(values) and all(type(v) is str for v in values):
                self.str_ids[f] = {v: i + 1 for i, v in enumerate(values)}
        self.enabled = not schema.multi_valued and all(f in vocabs.dense_stats for f in schema.dense)
        stats = [vocabs.dense_stats[f] for f in schema.dense] if self.enabled else []
        self.mean = np.asarray([m for m, _ in stats], dtype=np.float64)
        self.std = np.asarray([s for _, s in stats], dtype=np.float64)

    def encode(self, df: pd.DataFrame) -> EncodedFrame:
        """The frame encoded for prediction (no labels); DataError exactly as `encode_frame` raises it."""
        fast = self._fast(df) if self.enabled else None
        if fast is not None:
            return fast
        return encode_frame(df, self.schema, self.vocabs, tasks=[], require_labels=False)

    def _fast(self, df: Any) -> EncodedFrame | None:
        """The encoding of a plainly clean frame, or None when the full validator must look at it."""
        if not isinstance(df, pd.DataFrame) or len(df) == 0 or not df.columns.is_unique:
            return None
        columns = set(df.columns)
        if any(f not in columns for f in self.schema.sparse) or any(f not in columns for f in self.schema.dense):
            return None
        n = len(df)
        single = np.empty((len(self.schema.sparse), n), dtype=np.int64)
        for j, f in enumerate(self.schema.sparse):
            ids = self._ids(f, df[f].to_numpy())
            if ids is None:
                return None
            single[j] = ids
        dense = np.zeros((n, len(self.schema.dense)), dtype=np.float32)
        for j, f in enumerate(self.schema.dense):
            x = df[f].to_numpy()
            if x.dtype.kind not in "iuf":
                return None
            x = x.astype(np.float64)
            if np.isinf(x).any():
                return None
            z = (x - self.mean[j]) / self.std[j]
            dense[:, j] = np.where(np.isnan(z), 0.0, z)
        return EncodedFrame(list(self.schema.sparse), torch.from_numpy(single), {}, torch.from_numpy(dense), None,
                            [], df.index)

    def _ids(self, feature: str, values: np.ndarray) -> np.ndarray | None:
        """Vocabulary ids of one clean column (0 = OOV), or None when the column needs the full validator."""
        kind = values.dtype.kind
        if kind == "i" and (feature in self.int_ids or feature in self.hashed):
            if values.min() < 0:
                return None
            return self.vocabs.encode(feature, values)
        if kind == "O" and (feature in self.str_ids or feature in self.hashed):
            if pd.api.types.infer_dtype(values, skipna=False) != "string":
                return None
            if feature in self.hashed:
                return self.vocabs.encode(feature, values)
            lookup = self.str_ids[feature]
            return np.fromiter((lookup.get(v, 0) for v in values), dtype=np.int64, count=len(values))
        return None
