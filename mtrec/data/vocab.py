"""Vocabularies fitted on training data: categorical value -> id (0 = OOV), plus dense mean/std."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mtrec.data.schema import Schema
from mtrec.data.validation import check_frame
from mtrec.errors import DataError

OOV_ID = 0
FORMAT_VERSION = 1


class Vocabularies:
    """One vocabulary per sparse feature (known values get ids 1..n by descending training frequency, 0 = OOV)
    and the mean/std of each dense feature, so training and serving encode identically."""

    def __init__(self, values: dict[str, list[Any]], dense_stats: dict[str, tuple[float, float]]) -> None:
        self.values = {f: list(v) for f, v in values.items()}
        self.dense_stats = {f: (float(m), float(s)) for f, (m, s) in dense_stats.items()}
        self._index = {f: pd.Index(v, dtype=_index_dtype(v), tupleize_cols=False) for f, v in self.values.items()}

    @classmethod
    def fit(cls, df: pd.DataFrame, schema: Schema, min_count: int = 1) -> Vocabularies:
        """Fit on training data: values seen fewer than `min_count` times map to OOV; NaN never gets an id."""
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        flat, _ = check_frame(df, schema, tasks=[], require_labels=False)
        values: dict[str, list[Any]] = {}
        for f in schema.sparse:
            raw = flat[f][1] if f in flat else df[f]
            if isinstance(raw.dtype, pd.CategoricalDtype):
                raw = raw.astype(raw.cat.categories.dtype)
            if pd.api.types.is_float_dtype(raw.dtype):
                raw = raw.dropna().astype(np.int64)
            counts = raw.value_counts(sort=False, dropna=True)
            counts = counts[counts >= min_count]
            order = np.argsort(-counts.to_numpy(), kind="stable")
            values[f] = _to_python(counts.index.to_numpy()[order])
        stats: dict[str, tuple[float, float]] = {}
        for f in schema.dense:
            x = pd.to_numeric(df[f], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            mean = float(np.nanmean(x)) if np.isfinite(x).any() else 0.0
            std = float(np.nanstd(x)) if np.isfinite(x).any() else 1.0
            stats[f] = (mean, std if std > 0 else 1.0)
        return cls(values, stats)

    @property
    def sparse(self) -> list[str]:
        """Sparse feature names in schema order."""
        return list(self.values)

    @property
    def dense(self) -> list[str]:
        """Dense feature names in schema order."""
        return list(self.dense_stats)

    def num_embeddings(self, feature: str) -> int:
        """Rows the feature's embedding table needs: known values + 1 for OOV."""
        try:
            return len(self.values[feature]) + 1
        except KeyError:
            raise DataError(f"no vocabulary for feature {feature!r}; known: {self.sparse}", column=feature) from None

    def feature_specs(self) -> list[dict[str, Any]]:
        """[{"name": f, "num_embeddings": n}, ...] in schema order, for building the embedding tables."""
        return [{"name": f, "num_embeddings": self.num_embeddings(f)} for f in self.values]

    def encode(self, feature: str, values: Any) -> np.ndarray:
        """Map raw values (array-like) to int64 ids; unseen values and NaN -> 0."""
        if feature not in self._index:
            raise DataError(f"no vocabulary for feature {feature!r}; known: {self.sparse}", column=feature)
        if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype):
            cat_ids = np.concatenate([self.encode(feature, values.cat.categories), [OOV_ID]])
            return cat_ids[values.cat.codes.to_numpy()]
        vals = values.to_numpy() if isinstance(values, (pd.Series, pd.Index)) else np.asarray(values)
        if len(vals) == 0:
            return np.zeros(0, dtype=np.int64)
        ids = self._index[feature].get_indexer(vals).astype(np.int64)
        ids += 1
        return ids

    def standardize(self, feature: str, values: Any) -> np.ndarray:
        """(x - mean) / std as float32, NaN -> 0 (the training mean)."""
        mean, std = self.dense_stats[feature]
        x = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        out = (x - mean) / std
        out[np.isnan(out)] = 0.0
        return out.astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable form (values as Python scalars), read back by from_dict."""
        return {"format_version": FORMAT_VERSION, "sparse": {f: list(v) for f, v in self.values.items()},
                "dense": {f: [m, s] for f, (m, s) in self.dense_stats.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Vocabularies:
        """Rebuild vocabularies written by to_dict."""
        if not isinstance(d, dict) or d.get("format_version") != FORMAT_VERSION:
            got = d.get("format_version") if isinstance(d, dict) else type(d).__name__
            raise DataError(f"unsupported vocabularies format {got!r}; expected format_version {FORMAT_VERSION}")
        try:
            return cls(d["sparse"], {f: (ms[0], ms[1]) for f, ms in d["dense"].items()})
        except (KeyError, TypeError, IndexError) as e:
            raise DataError(f"corrupt vocabularies dict: {e!r}") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabularies) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        sizes = ", ".join(f"{f}={len(v)}" for f, v in self.values.items())
        return f"Vocabularies({sizes}; dense={self.dense})"


def _to_python(arr: np.ndarray) -> list[Any]:
    """Plain Python scalars (JSON-serializable) from a numpy array."""
    return arr.tolist() if arr.dtype != object else [v.item() if isinstance(v, np.generic) else v for v in arr]


def _index_dtype(values: list[Any]) -> Any:
    """Index dtype for a vocabulary: object for strings and mixed values, numeric otherwise (fast lookups)."""
    if values and all(isinstance(v, bool) for v in values):
        return object
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return np.int64
    return object
