"""Schema: which columns are sparse (categorical, maybe multi-valued), dense (float) and task labels, which
sparse features are hashed into a fixed number of rows (`hash_buckets`) instead of getting a vocabulary, and which
list columns are ordered behaviour sequences (`sequences`: kept newest-last, truncated from the oldest end)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from mtrec.data.profile import DataProfile
from mtrec.errors import DataError

LIST_TYPES = (list, tuple, np.ndarray)


@dataclass(frozen=True)
class SequenceFeature:
    """One ordered list column (oldest first): at most `max_len` newest items are kept; `shared_with` names the
    candidate-item feature whose vocabulary (and item table) it uses; `actions` a parallel list column (e.g. the
    rating given to each item) of the same length per row."""

    max_len: int = 50
    shared_with: str | None = None
    actions: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form, read back by sequence_features."""
        return {"max_len": self.max_len, "shared_with": self.shared_with, "actions": self.actions}


@dataclass
class Schema:
    """Feature and label columns of a frame; `multi_valued` is the subset of `sparse` whose cells are lists."""

    sparse: list[str]
    dense: list[str]
    tasks: list[str]
    multi_valued: list[str] = field(default_factory=list)
    source: str | None = None  # built-in dataset the schema came from; picks the model recipe by default
    hash_buckets: dict[str, int] = field(default_factory=dict)  # feature -> rows: `encoding: hash`, no vocabulary
    sequences: dict[str, SequenceFeature] = field(default_factory=dict)  # ordered list columns (see SequenceFeature)
    user: str | None = None  # the column naming the user: per-user metrics (GAUC) where a frame has it
    # rows and distinct values of the frame from_frame saw (sizes a default recipe; not saved, not compared)
    profile: DataProfile | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.sequences = sequence_features(self.sequences)
        seq_cols = [c for name, f in self.sequences.items() for c in (name, f.actions) if c is not None]
        self.sparse = _names(self.sparse, "sparse")
        self.sparse += [c for c in seq_cols if c not in self.sparse]
        self.multi_valued = _names(self.multi_valued, "multi_valued")
        self.multi_valued += [c for c in seq_cols if c not in self.multi_valued]
        self.dense, self.tasks = _names(self.dense, "dense"), _names(self.tasks, "tasks")
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
        if self.user is not None and not isinstance(self.user, str):
            raise DataError(f"schema.user must be a column name, got {self.user!r}")
        for name, f in self.sequences.items():
            if f.shared_with is not None and f.shared_with not in self.single_valued:
                raise DataError(f"schema.sequences.{name}.shared_with: {f.shared_with!r} is not a single-valued "
                                "sparse feature of the schema", column=name)
            if f.shared_with in self.hash_buckets or name in self.hash_buckets:
                raise DataError(f"schema.sequences.{name}: sequence features and the feature they share a table "
                                "with cannot be hashed", column=name)

    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        tasks: Sequence[str],
        sparse: Sequence[str] | None = None,
        dense: Sequence[str] | None = None,
        multi_valued: Sequence[str] | None = None,
        hash_buckets: Mapping[str, int] | None = None,
        sequences: Sequence[str] | Mapping[str, Any] | None = None,
        user: str | None = None,
    ) -> Schema:
        """Infer a schema: list cells -> multi-valued sparse, str/category/bool/int -> sparse, float -> dense.

        Lists given explicitly are kept as they are; the other non-task columns are inferred, but only into a
        kind (sparse or dense) that was left as None, so `sparse=[...]` alone still picks up float columns as dense.
        `hash_buckets` ({feature: rows}) hashes those sparse features into a fixed number of rows. `sequences`
        names ordered list columns (a list, or {column: {max_len, shared_with, actions}}); they and their action
        columns become multi-valued sparse features marked as sequences. `user` names the user column for GAUC.
        The schema keeps the frame's DataProfile (rows, distinct values), which sizes a default recipe (build_model).
        """
        tasks = _names(tasks, "tasks")
        duplicated = [str(c) for c in df.columns[df.columns.duplicated()]]
        if duplicated:
            raise DataError(f"column {duplicated[0]!r} appears more than once in the frame (row: all rows); "
                            "rename or drop the copies", column=duplicated[0])
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
        seqs = sequence_features(sequences or {})
        missing = [c for n, f in seqs.items() for c in (n, f.actions) if c is not None and c not in df.columns]
        if missing:
            raise DataError(f"sequence column {missing[0]!r} is not in the frame", column=missing[0])
        if user is not None and user not in df.columns:
            raise DataError(f"user column {user!r} is not in the frame", column=user)
        schema = cls(sparse=sparse_cols, dense=[c for c in dense_cols if c not in seqs], tasks=tasks,
                     multi_valued=list(multi_valued), hash_buckets=dict(hash_buckets or {}), sequences=seqs, user=user)
        schema.profile = DataProfile.of(df, schema)
        return schema

    @property
    def single_valued(self) -> list[str]:
        """Sparse features with one id per row, in schema order."""
        multi = set(self.multi_valued)
        return [c for c in self.sparse if c not in multi]

    def vocabulary_of(self, feature: str) -> str:
        """The feature whose vocabulary encodes `feature`: a sequence's `shared_with`, else the feature itself."""
        seq = self.sequences.get(feature)
        return seq.shared_with if seq is not None and seq.shared_with else feature

    @property
    def sequence_columns(self) -> list[str]:
        """Sequence columns and their action columns (read by the `sequence` embedding part, not pooled)."""
        return [c for name, f in self.sequences.items() for c in (name, f.actions) if c is not None]

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
        if self.sequences:
            out["sequences"] = {n: f.to_dict() for n, f in self.sequences.items()}
        if self.user is not None:
            out["user"] = self.user
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Schema:
        """Rebuild a schema written by to_dict."""
        try:
            return cls(sparse=d["sparse"], dense=d["dense"], tasks=d["tasks"], multi_valued=d.get("multi_valued", []),
                       source=d.get("source"), hash_buckets=d.get("hash_buckets") or {},
                       sequences=d.get("sequences") or {}, user=d.get("user"))
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


def sequence_features(spec: Sequence[str] | Mapping[str, Any]) -> dict[str, SequenceFeature]:
    """Check schema.sequences (a list of column names, or {column: SequenceFeature or its dict}); errors name the key."""
    if isinstance(spec, str):
        raise DataError(f"schema.sequences must be a list of column names or a mapping, got the string {spec!r}")
    items = spec.items() if isinstance(spec, Mapping) else ((n, {}) for n in _names(spec, "sequences"))
    out: dict[str, SequenceFeature] = {}
    for name, f in items:
        if isinstance(f, SequenceFeature):
            f = f.to_dict()
        if not isinstance(f, Mapping):
            raise DataError(f"schema.sequences.{name}: expected a mapping (max_len, shared_with, actions), got {f!r}",
                            column=str(name))
        extra = set(f) - {"max_len", "shared_with", "actions"}
        if extra:
            raise DataError(f"schema.sequences.{name}.{sorted(extra)[0]}: unknown key (allowed: max_len, "
                            "shared_with, actions)", column=str(name))
        max_len = f.get("max_len", 50)
        if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or max_len < 1:
            raise DataError(f"schema.sequences.{name}.max_len: must be an integer >= 1, got {max_len!r}",
                            column=str(name))
        for key in ("shared_with", "actions"):
            if f.get(key) is not None and not isinstance(f.get(key), str):
                raise DataError(f"schema.sequences.{name}.{key}: must be a column name, got {f.get(key)!r}",
                                column=str(name))
        out[str(name)] = SequenceFeature(int(max_len), f.get("shared_with"), f.get("actions"))
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
