"""Schema: which columns are sparse (categorical, maybe multi-valued), dense (float) and task labels, and which
sparse features are hashed into a fixed number of rows (`hash_buckets`) instead of getting a vocabulary."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from mtrec.errors import DataError

LIST_TYPES = (list, tuple, np.ndarray)


@dataclass
class Schema:
    """Feature and label columns of a frame; `multi_valued` is the subset of `sparse` whose cells are lists."""

    sparse: list[str]
    dense: list[str]
    tasks: list[str]
    multi_valued: list[str] = field(default_factory=list)
    source: str | None = None  # built-in dataset the schema came from; picks the model recipe by default
    hash_buckets: dict[str, int] = field(default_factory=dict)  # feature -> rows: `encoding: hash`, no vocabulary

    def __post_init__(self) -> None:
        self.sparse, self.dense = _names(self.sparse, "sparse"), _names(self.dense, "dense")
        self.tasks, self.multi_valued = _names(self.tasks, "tasks"), _names(self.multi_valued, "multi_valued")
        self.hash_buckets = _buckets(self.hash_buckets, self.sparse)
        for a, b in (("sparse", "dense"), ("sparse", "tasks"), ("dense", "tasks")):
            both = set(getattr(self, a)) & set(getattr(self, b))
            if both:
                col = sorted(both)[0]
                raise DataError(f"column {col!r} is listed in both schema.{a} and schema.{b}", column=col)
        extra = [c for c in self.multi_valued if c not in self.sparse]
        if extra:
            raise DataError(f"multi-valued column {extra[0]!r} is not a sparse feature", column=extra[0])
        self.multi_valued = [c for c in self.sparse if c in set(self.multi_valued)]

    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        tasks: Sequence[str],
        sparse: Sequence[str] | None = None,
        dense: Sequence[str] | None = None,
        multi_valued: Sequence[str] | None = None,
        hash_buckets: Mapping[str, int] | None = None,
    ) -> Schema:
        """Infer a schema: list cells -> multi-valued sparse, str/category/bool/int -> sparse, float -> dense.

        Lists given explicitly are kept as they are; the other non-task columns are inferred, but only into a
        kind (sparse or dense) that was left as None, so `sparse=[...]` alone still picks up float columns as dense.
        `hash_buckets` ({feature: rows}) hashes those sparse features into a fixed number of rows.
        """
        tasks = _names(tasks, "tasks")
        missing = [c for c in tasks if c not in df.columns]
        if missing:
            raise DataError(f"task label column {missing[0]!r} is not in the frame", column=missing[0])
        given = set(tasks) | set(sparse or ()) | set(dense or ())
        inferred_sparse: list[str] = []
        inferred_dense: list[str] = []
        inferred_multi: list[str] = []
        for col in df.columns:
            kind = _infer_kind(df[col])
            if kind == "multi":
                inferred_multi.append(col)
            if col in given:
                continue
            if kind in ("sparse", "multi") and sparse is None:
                inferred_sparse.append(col)
            elif kind == "dense" and dense is None:
                inferred_dense.append(col)
            elif kind == "unsupported" and (sparse is None or dense is None):
                raise DataError(
                    f"column {col!r} has dtype {df[col].dtype} which is neither categorical nor numeric; "
                    "drop it or name the schema's sparse/dense columns explicitly",
                    column=col,
                )
        sparse_cols = list(sparse) if sparse is not None else inferred_sparse
        dense_cols = list(dense) if dense is not None else inferred_dense
        if multi_valued is None:
            multi_valued = [c for c in inferred_multi if c in set(sparse_cols)]
        return cls(sparse=sparse_cols, dense=dense_cols, tasks=tasks, multi_valued=list(multi_valued),
                   hash_buckets=dict(hash_buckets or {}))

    @property
    def single_valued(self) -> list[str]:
        """Sparse features with one id per row, in schema order."""
        multi = set(self.multi_valued)
        return [c for c in self.sparse if c not in multi]

    def with_tasks(self, tasks: Sequence[str]) -> Schema:
        """A copy of this schema with other task label columns (e.g. a new task)."""
        return replace(self, tasks=list(tasks))

    def features(self) -> list[str]:
        """All feature columns: sparse then dense."""
        return [*self.sparse, *self.dense]

    def encoding(self, feature: str) -> str:
        """"hash" for a hashed sparse feature, "vocab" for the others."""
        return "hash" if feature in self.hash_buckets else "vocab"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable form, read back by from_dict."""
        out: dict[str, Any] = {"sparse": list(self.sparse), "dense": list(self.dense), "tasks": list(self.tasks),
                               "multi_valued": list(self.multi_valued), "source": self.source}
        if self.hash_buckets:
            out["hash_buckets"] = dict(self.hash_buckets)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Schema:
        """Rebuild a schema written by to_dict."""
        try:
            return cls(sparse=d["sparse"], dense=d["dense"], tasks=d["tasks"], multi_valued=d.get("multi_valued", []),
                       source=d.get("source"), hash_buckets=d.get("hash_buckets") or {})
        except (KeyError, TypeError) as e:
            raise DataError(f"not a schema dict (needs sparse, dense, tasks lists): {e}") from None


def _names(names: Iterable[str] | str, what: str) -> list[str]:
    """Check a list of column names (no duplicates, all str) and return it as a new list."""
    if isinstance(names, str):
        raise DataError(f"schema.{what} must be a list of column names, got the string {names!r}")
    out = list(names)
    for n in out:
        if not isinstance(n, str):
            raise DataError(f"schema.{what} holds {n!r}; column names must be strings", column=str(n))
    dup = [n for i, n in enumerate(out) if n in out[:i]]
    if dup:
        raise DataError(f"column {dup[0]!r} appears twice in schema.{what}", column=dup[0])
    return out


def _buckets(buckets: Mapping[str, int] | None, sparse: list[str]) -> dict[str, int]:
    """Check schema.hash_buckets: sparse features only, each an integer number of rows >= 1."""
    if not isinstance(buckets, Mapping):
        raise DataError(f"schema.hash_buckets must map feature names to row counts, got {buckets!r}")
    out = {}
    for f, n in buckets.items():
        if f not in sparse:
            raise DataError(f"schema.hash_buckets.{f}: {f!r} is not a sparse feature of the schema", column=str(f))
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise DataError(f"schema.hash_buckets.{f}: buckets must be an integer >= 1, got {n!r}", column=f)
        out[f] = int(n)
    return out


def _infer_kind(s: pd.Series) -> str:
    """'multi', 'sparse', 'dense' or 'unsupported' for one column."""
    dtype = s.dtype
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(dtype):
        return "sparse"
    if pd.api.types.is_integer_dtype(dtype):
        return "sparse"
    if pd.api.types.is_float_dtype(dtype):
        return "dense"
    if pd.api.types.is_string_dtype(dtype) or dtype == object:
        first = s.dropna().head(1) if dtype == object else s.head(0)
        if len(first) and isinstance(first.iloc[0], LIST_TYPES):
            return "multi"
        return "sparse"
    return "unsupported"
