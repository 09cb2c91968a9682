"""DataProfile: the row count and each sparse feature's number of distinct values, what a default recipe is
sized from (mtrec/recipe_defaults.py) before any vocabulary is fitted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from mtrec.data.schema import Schema


@dataclass(frozen=True)
class DataProfile:
    """`rows` of training data and `cardinality[f]`: distinct values of sparse feature f (buckets if hashed)."""

    rows: int
    cardinality: dict[str, int]

    @classmethod
    def of(cls, df: pd.DataFrame, schema: Schema) -> DataProfile:
        """Count rows and distinct non-missing values per sparse feature (list cells: over all their values)."""
        counts = {}
        for f in schema.sparse:
            if f in schema.hash_buckets:
                counts[f] = schema.hash_buckets[f]
            elif f not in df.columns:
                continue
            elif f in schema.multi_valued:
                cells = [np.asarray(c).ravel() for c in df[f].dropna()]
                counts[f] = int(pd.unique(np.concatenate(cells)).size) if cells else 0
            else:
                counts[f] = int(df[f].nunique(dropna=True))
        return cls(rows=len(df), cardinality=counts)
