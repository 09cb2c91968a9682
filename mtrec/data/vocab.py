"""Vocabularies fitted on training data: categorical value -> id (0 = OOV), hashed features, dense mean/std.

Fitting is one streaming pass (`VocabFitter`): each chunk's values are counted (pandas factorize + bincount) and the
per-chunk counts are merged now and then, so a stream of any length is fitted with memory in the number of
distinct values, not of rows; `Vocabularies.fit(frame)` is the same fitter over one chunk. Ids follow descending
frequency, ties by first appearance, so a frame and the same rows streamed in chunks get the same ids.
A feature declared `hash` in the schema (or one whose distinct values pass `hash_above`) gets no vocabulary: its
values are hashed into a fixed number of rows (mtrec.data.hashing), and the fit only measures the collision rate.

Vocabularies are saved as one columnar file (`write`/`read`, Parquet: feature, kind, value, count per id), the
manifest holding only a small description (`manifest_entry`); the JSON form of format 1 (`from_dict`) still loads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtrec.data.hashing import SPEC as HASH_SPEC, bucket_ids, hash64
from mtrec.data.schema import Schema
from mtrec.data.validation import check_frame, row_error
from mtrec.errors import DataError

OOV_ID = 0
FORMAT_VERSION = 1  # the JSON form (values in the manifest), still read
COLUMNAR_VERSION = 2  # the columnar file beside the manifest
VOCAB_FILE = "vocabularies.parquet"
AUTO_HASH_ABOVE = 1 << 24  # a feature with more distinct values than this is hashed into this many buckets
HASH_TRACK_LIMIT = 1 << 22  # distinct values of a hashed feature tracked at fit time for the collision rate
_KINDS = {"int": 0, "str": 1, "bool": 2, "bytes": 3}


@dataclass(frozen=True)
class FitOptions:
    """How vocabularies are fitted: the fewest occurrences a value needs for an id and the most ids a feature gets
    (an int for every feature, or a mapping by feature), and the distinct-value count above which a feature is
    hashed into that many buckets instead (None: never automatically)."""

    min_count: int | Mapping[str, int] = 1
    max_size: int | Mapping[str, int] | None = None
    hash_above: int | None = AUTO_HASH_ABOVE

    def fitter(self, schema: Schema) -> VocabFitter:
        """A VocabFitter for `schema` with these settings."""
        return VocabFitter(schema, min_count=self.min_count, max_size=self.max_size, hash_above=self.hash_above)

    def fit(self, df: pd.DataFrame, schema: Schema) -> Vocabularies:
        """Vocabularies fitted on one frame with these settings."""
        return Vocabularies.fit(df, schema, min_count=self.min_count, max_size=self.max_size,
                                hash_above=self.hash_above)


class Vocabularies:
    """One encoder per sparse feature (a vocabulary: known values get ids 1..n by descending training frequency,
    0 = OOV; or a hash into `buckets` rows + row 0 for missing) and the mean/std of each dense feature, so
    training and serving encode identically. `report` holds what the fit measured per feature (distinct values,
    kept, collision rate of hashed ones)."""

    def __init__(self, values: Mapping[str, Any], dense_stats: Mapping[str, tuple[float, float]],
                 hashed: Mapping[str, int] | None = None, order: list[str] | None = None,
                 counts: Mapping[str, np.ndarray] | None = None, report: Mapping[str, dict[str, Any]] | None = None
                 ) -> None:
        self.values = {f: _as_array(v) for f, v in values.items()}
        self.hashed = {f: int(n) for f, n in (hashed or {}).items()}
        both = set(self.values) & set(self.hashed)
        if both:
            raise DataError(f"feature {sorted(both)[0]!r} has both a vocabulary and a hash", column=sorted(both)[0])
        self.order = list(order) if order is not None else [*self.values, *self.hashed]
        if sorted(self.order) != sorted([*self.values, *self.hashed]):
            raise DataError(f"vocabularies: feature order {self.order} does not match the features")
        self.dense_stats = {f: (float(m), float(s)) for f, (m, s) in dense_stats.items()}
        self.counts = {f: np.asarray(c, dtype=np.int64) for f, c in (counts or {}).items()}
        self.report = {f: dict(r) for f, r in (report or {}).items()}
        self._lookup: dict[str, Any] = {}

    # fitting ------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, df: pd.DataFrame, schema: Schema, min_count: int | Mapping[str, int] = 1,
            max_size: int | Mapping[str, int] | None = None, hash_above: int | None = AUTO_HASH_ABOVE
            ) -> Vocabularies:
        """Fit on a training frame: values seen fewer than `min_count` times map to OOV, at most `max_size` values
        (the most frequent) get ids; NaN never gets an id. A DataError names the first bad column and row."""
        fitter = VocabFitter(schema, min_count=min_count, max_size=max_size, hash_above=hash_above)
        flat, _ = check_frame(df, schema, tasks=[], require_labels=False)
        fitter.add(df, flat)
        return fitter.finish()

    # queries ------------------------------------------------------------------------------------
    @property
    def sparse(self) -> list[str]:
        """Sparse feature names in schema order (vocabulary and hashed ones)."""
        return list(self.order)

    @property
    def dense(self) -> list[str]:
        """Dense feature names in schema order."""
        return list(self.dense_stats)

    def has(self, feature: str) -> bool:
        """Whether `feature` can be encoded."""
        return feature in self.values or feature in self.hashed

    def encoding(self, feature: str) -> str:
        """"vocab" or "hash"."""
        self._require(feature)
        return "hash" if feature in self.hashed else "vocab"

    def num_embeddings(self, feature: str) -> int:
        """Rows the feature's embedding table needs: known values + 1 for OOV, or buckets + 1 for missing."""
        self._require(feature)
        return self.hashed[feature] + 1 if feature in self.hashed else len(self.values[feature]) + 1

    def feature_specs(self) -> list[dict[str, Any]]:
        """[{"name": f, "num_embeddings": n}, ...] in schema order, for building the embedding tables."""
        return [{"name": f, "num_embeddings": self.num_embeddings(f)} for f in self.order]

    def _require(self, feature: str) -> None:
        if not self.has(feature):
            raise DataError(f"no vocabulary for feature {feature!r}; known: {self.sparse}", column=feature)

    # encoding -----------------------------------------------------------------------------------
    def encode(self, feature: str, values: Any) -> np.ndarray:
        """Map raw values (array-like) to int64 ids: vocabulary ids (unseen values and NaN -> 0) or hashed rows."""
        self._require(feature)
        if feature in self.hashed:
            return bucket_ids(values, self.hashed[feature])
        if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype):
            cat_ids = np.concatenate([self.encode(feature, values.cat.categories), [OOV_ID]])
            return cat_ids[values.cat.codes.to_numpy()]
        if isinstance(values, (pd.Series, pd.Index)):
            vals = values.to_numpy()
        else:  # a list keeps its values' types (numpy would turn [1, "a"] into strings)
            vals = np.asarray(values, dtype=object) if isinstance(values, (list, tuple)) else np.asarray(values)
        if len(vals) == 0:
            return np.zeros(0, dtype=np.int64)
        keys = self.values[feature]
        vals = self._canonical(feature, vals, values)
        if keys.dtype.kind == "i" and vals.dtype.kind in "iufb":
            return self._encode_ints(feature, vals)
        index = self._lookup.get(("index", feature))
        if index is None:
            index = self._lookup[("index", feature)] = pd.Index(keys, dtype=keys.dtype, tupleize_cols=False)
        return index.get_indexer(vals).astype(np.int64) + 1

    def id_kinds(self, feature: str) -> frozenset[str]:
        """The canonical kinds ("integer", "string": mtrec-hash-1's, bools counting as integers) of a vocabulary's
        values; a value of another kind is an error, never an unseen id."""
        kinds = self._lookup.get(("kinds", feature))
        if kinds is None:
            keys = self.values[feature]
            kinds = frozenset({"integer"}) if keys.dtype.kind == "i" else \
                frozenset(k for k in map(id_kind, keys) if k is not None)
            self._lookup[("kinds", feature)] = kinds
        return kinds

    def _canonical(self, feature: str, vals: np.ndarray, original: Any) -> np.ndarray:
        """`vals` checked against the vocabulary's kinds (DataError naming column and row for a value of another
        kind: "39" where integers were trained, 7 where strings were); against integer keys, integer objects become
        int64 (missing: -1, never an id) so that 39, 39.0, np.int64(39) and True/1 find one id."""
        allowed = self.id_kinds(feature)
        if not allowed:
            return vals
        if vals.dtype.kind in "iufb":
            kinds = {"integer"}
        elif vals.dtype.kind in "US":
            kinds = {"string"}
        else:
            kinds = {k for k in map(id_kind, pd.unique(vals)) if k is not None}
        if not kinds <= allowed:
            i = next(i for i, v in enumerate(vals) if id_kind(v) not in (None, *allowed))
            row = original.index[i] if isinstance(original, pd.Series) else i
            have = " and ".join(sorted(k + "s" for k in allowed))
            raise row_error(feature, row, f"id {vals[i]!r} is of kind {id_kind(vals[i])}, but this feature was trained "
                            f"on {have}; mtrec does not convert between them (cast the column)")
        if vals.dtype == object and self.values[feature].dtype.kind == "i":
            return np.fromiter((-1 if id_kind(v) is None else int(v) for v in vals), dtype=np.int64, count=len(vals))
        return vals

    def _encode_ints(self, feature: str, vals: np.ndarray) -> np.ndarray:
        """Integer ids against an integer vocabulary: a binary search in the sorted keys (floats: NaN -> OOV)."""
        sorted_keys = self._lookup.get(("sorted", feature))
        if sorted_keys is None:
            keys = self.values[feature]
            order = np.argsort(keys, kind="stable")
            dtype = np.int32 if len(keys) < 2 ** 31 - 1 else np.int64
            sorted_keys = self._lookup[("sorted", feature)] = (keys[order], (order + 1).astype(dtype))
        keys, ids = sorted_keys
        if len(keys) == 0:
            return np.zeros(len(vals), dtype=np.int64)
        valid = None
        if vals.dtype.kind == "f":
            valid = ~np.isnan(vals)
            vals = np.where(valid, vals, -1)
        if vals.dtype.kind == "u" and vals.dtype.itemsize == 8:
            valid = vals <= np.iinfo(np.int64).max if valid is None else valid & (vals <= np.iinfo(np.int64).max)
        x = vals.astype(np.int64)
        pos = np.minimum(np.searchsorted(keys, x), len(keys) - 1)
        hit = keys[pos] == x
        if valid is not None:
            hit &= valid
        return np.where(hit, ids[pos], 0).astype(np.int64)

    def standardize(self, feature: str, values: Any) -> np.ndarray:
        """(x - mean) / std as float32, NaN -> 0 (the training mean)."""
        mean, std = self.dense_stats[feature]
        x = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        out = (x - mean) / std
        out[np.isnan(out)] = 0.0
        with np.errstate(over="ignore"):
            scaled = out.astype(np.float32)
        if not np.isfinite(scaled).all():
            i = int(np.argmax(~np.isfinite(scaled)))
            row = values.index[i] if isinstance(values, pd.Series) else i
            raise row_error(feature, row, f"dense value {x[i]!r} is {out[i]:.3g} standard deviations from the "
                            "training mean, beyond float32's range")
        return scaled

    # storage ------------------------------------------------------------------------------------
    def manifest_entry(self, file: str = VOCAB_FILE) -> dict[str, Any]:
        """The small description a manifest holds (the values live in `file`, written by `write`)."""
        features: dict[str, dict[str, Any]] = {}
        start = 0
        for f in self.order:
            if f in self.hashed:
                features[f] = {"encoding": "hash", "buckets": self.hashed[f], "hash": HASH_SPEC}
            else:
                n = len(self.values[f])
                features[f] = {"encoding": "vocab", "size": n, "rows": [start, start + n]}
                start += n
            if f in self.report:
                features[f]["fit"] = self.report[f]
        return {"format_version": COLUMNAR_VERSION, "file": file, "features": features,
                "dense": {f: [m, s] for f, (m, s) in self.dense_stats.items()}}

    def to_table(self) -> Any:
        """The vocabulary values as one Arrow table: feature, kind (int/str/bool/bytes), int_value, bytes_value,
        count; a feature's rows are its ids 1..n in order."""
        import pyarrow as pa

        parts = []
        for f in self.order:
            if f in self.hashed:
                continue
            values = self.values[f]
            n = len(values)
            counts = self.counts.get(f)
            counts = counts if counts is not None and len(counts) == n else np.zeros(n, dtype=np.int64)
            kind, ints, data = _columns_of(values, f)
            parts.append(pa.table({
                "feature": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([f])),
                "kind": pa.array(kind, pa.int8()), "int_value": ints, "bytes_value": data,
                "count": pa.array(counts, pa.int64())}))
        if not parts:
            return pa.table({"feature": pa.array([], pa.dictionary(pa.int32(), pa.string())),
                             "kind": pa.array([], pa.int8()), "int_value": pa.array([], pa.int64()),
                             "bytes_value": pa.array([], pa.binary()), "count": pa.array([], pa.int64())})
        return pa.concat_tables(parts, promote_options="permissive").combine_chunks()

    def write(self, path: str | Path) -> Path:
        """Write the vocabulary values as a Parquet file (what `read` loads with a manifest entry): lz4, dictionary
        encoding only for the feature column (values are distinct: at 2M ids ~5x faster to write and ~7x to read
        than zstd with dictionaries tried on every column, 9.8 against 7.3 MiB)."""
        import pyarrow.parquet as pq

        path = Path(path)
        pq.write_table(self.to_table(), path, compression="lz4", use_dictionary=["feature"], row_group_size=1 << 20)
        return path

    @classmethod
    def read(cls, path: str | Path, entry: Mapping[str, Any]) -> Vocabularies:
        """Rebuild from the file `write` wrote and the manifest entry describing it."""
        import pyarrow.parquet as pq

        try:
            features = entry["features"]
            dense = {f: (ms[0], ms[1]) for f, ms in entry["dense"].items()}
            table = pq.read_table(path, columns=["kind", "int_value", "bytes_value", "count"])
        except (KeyError, TypeError, IndexError, AttributeError) as e:
            raise DataError(f"corrupt vocabularies entry: {e!r}") from None
        except Exception as e:  # pyarrow raises ArrowInvalid, OSError... for a damaged file
            raise DataError(f"cannot read the vocabulary file {str(path)!r}: {type(e).__name__}: {e}") from e
        values, hashed, counts = {}, {}, {}
        for f, spec in features.items():
            if spec.get("encoding") == "hash":
                if spec.get("hash") != HASH_SPEC:
                    raise DataError(f"feature {f!r} is hashed with {spec.get('hash')!r}; this mtrec hashes with "
                                    f"{HASH_SPEC!r}", column=f)
                hashed[f] = int(spec["buckets"])
                continue
            lo, hi = spec["rows"]
            if not 0 <= lo <= hi <= table.num_rows or hi - lo != spec["size"]:
                raise DataError(f"vocabulary file {str(path)!r} does not hold the rows of feature {f!r}", column=f)
            part = table.slice(lo, hi - lo)
            values[f] = _values_of(part, f)
            counts[f] = part.column("count").to_numpy()
        report = {f: spec["fit"] for f, spec in features.items() if "fit" in spec}
        return cls(values, dense, hashed=hashed, order=list(features), counts=counts, report=report)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of format 1 (values as Python lists); small vocabularies only, hashed features absent."""
        if self.hashed:
            raise DataError(f"hashed features ({', '.join(self.hashed)}) have no JSON form; use write/read")
        return {"format_version": FORMAT_VERSION, "sparse": {f: self.values[f].tolist() for f in self.order},
                "dense": {f: [m, s] for f, (m, s) in self.dense_stats.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Vocabularies:
        """Rebuild vocabularies written by to_dict (format 1, what older checkpoints hold in their manifest)."""
        if not isinstance(d, dict) or d.get("format_version") != FORMAT_VERSION:
            got = d.get("format_version") if isinstance(d, dict) else type(d).__name__
            raise DataError(f"unsupported vocabularies format {got!r}; expected format_version {FORMAT_VERSION}")
        try:
            return cls(d["sparse"], {f: (ms[0], ms[1]) for f, ms in d["dense"].items()})
        except (KeyError, TypeError, IndexError, AttributeError) as e:
            raise DataError(f"corrupt vocabularies dict: {e!r}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabularies):
            return False
        return (self.order == other.order and self.hashed == other.hashed and self.dense_stats == other.dense_stats
                and all(_same_values(self.values[f], other.values[f]) for f in self.values))

    def __repr__(self) -> str:
        sizes = ", ".join(f"{f}={len(self.values[f])}" if f in self.values else f"{f}=hash({self.hashed[f]})"
                          for f in self.order)
        return f"Vocabularies({sizes}; dense={self.dense})"


class VocabFitter:
    """Fits Vocabularies in one pass over chunks: `add(chunk, flat)` for each validated chunk, then `finish()`.

    `min_count` / `max_size` apply per feature (an int for all, or a mapping by feature). Features the schema
    hashes get no counts; a feature whose distinct values pass `hash_above` is switched to hashing into
    `hash_above` buckets (its counts are dropped), so memory stays bounded for any cardinality."""

    def __init__(self, schema: Schema, min_count: int | Mapping[str, int] = 1,
                 max_size: int | Mapping[str, int] | None = None, hash_above: int | None = AUTO_HASH_ABOVE) -> None:
        self.schema = schema
        self.min_count = _per_feature(min_count, schema.sparse, "min_count", 1)
        self.max_size = _per_feature(max_size, schema.sparse, "max_size", None)
        for f, n in self.min_count.items():
            if n is None or n < 1:
                raise ValueError(f"min_count must be >= 1, got {n} for {f!r}")
        for f, n in self.max_size.items():
            if n is not None and n < 0:
                raise ValueError(f"max_size must be >= 0, got {n} for {f!r}")
        self.hash_above = hash_above
        self.hashed = dict(schema.hash_buckets)
        self.counters = {f: _Counter() for f in schema.sparse if f not in self.hashed}
        self.trackers = {f: _HashTracker() for f in self.hashed}
        self.moments = {f: _Moments() for f in schema.dense}
        self.rows = 0

    def add(self, df: pd.DataFrame, flat: Mapping[str, tuple[np.ndarray, pd.Series]]) -> None:
        """Count one validated chunk (`flat`: its flattened multi-valued columns, as check_frame returns them)."""
        self.rows += len(df)
        for f in self.schema.sparse:
            raw = flat[f][1] if f in flat else df[f]
            if f in self.trackers:
                self.trackers[f].add(raw)
                continue
            counter = self.counters[f]
            counter.add(_raw_values(raw))
            if self.hash_above is not None and counter.distinct > self.hash_above:
                del self.counters[f]
                self.hashed[f] = self.hash_above
                self.trackers[f] = _HashTracker(auto=True)
                self.trackers[f].add(raw)
        for f in self.schema.dense:
            self.moments[f].add(pd.to_numeric(df[f], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan))

    def finish(self) -> Vocabularies:
        """The fitted Vocabularies (with each feature's fit report)."""
        values, counts, report = {}, {}, {}
        for f, counter in self.counters.items():
            keys, n = counter.result()
            distinct = len(keys)
            keep = n >= self.min_count[f]
            keys, n = keys[keep], n[keep]
            order = np.argsort(-n, kind="stable")
            if self.max_size[f] is not None:
                order = order[: self.max_size[f]]
            values[f], counts[f] = _normalized(keys[order]), n[order]
            report[f] = {"distinct": int(distinct), "kept": int(len(order))}
        for f, tracker in self.trackers.items():
            report[f] = tracker.report(self.hashed[f])
        stats = {f: m.result() for f, m in self.moments.items()}
        hashed = {f: self.hashed[f] for f in self.schema.sparse if f in self.hashed}
        return Vocabularies(values, stats, hashed=hashed, order=list(self.schema.sparse), counts=counts, report=report)


class _Counter:
    """Counts of one feature's values, merged from per-chunk counts; keys in order of first appearance."""

    COMPACT_MIN = 1 << 20

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, np.ndarray]] = []
        self.pending = 0
        self.distinct = 0

    def add(self, raw: pd.Series) -> None:
        codes, uniques = pd.factorize(raw, use_na_sentinel=True)
        counts = np.bincount(codes[codes >= 0], minlength=len(uniques)).astype(np.int64)
        self.parts.append((np.asarray(uniques), counts))
        self.pending += len(uniques)
        self.distinct = max(self.distinct, len(uniques))
        if self.pending > max(self.COMPACT_MIN, 2 * self.distinct):
            self._compact()

    def _compact(self) -> None:
        """Merge the parts into one: concatenated in chunk order, so factorize keeps first appearance order."""
        if len(self.parts) > 1:
            keys = np.concatenate([k for k, _ in self.parts]) if all(k.dtype == self.parts[0][0].dtype
                                                                     for k, _ in self.parts) \
                else np.concatenate([k.astype(object) for k, _ in self.parts])
            codes, uniques = pd.factorize(keys, use_na_sentinel=True)
            weights = np.concatenate([c for _, c in self.parts])
            merged = np.bincount(codes, weights=weights, minlength=len(uniques)).astype(np.int64)
            self.parts = [(np.asarray(uniques), merged)]
        self.distinct = len(self.parts[0][0]) if self.parts else 0
        self.pending = self.distinct

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        self._compact()
        if not self.parts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return self.parts[0]


class _HashTracker:
    """Distinct 64-bit hashes of a hashed feature's values, for its collision rate: all of them up to
    HASH_TRACK_LIMIT, beyond that the HASH_TRACK_LIMIT smallest (a uniform sample that also estimates the distinct
    count, as k-minimum-values sketches do); per-chunk uniques are merged when they pile up, as _Counter merges."""

    def __init__(self, auto: bool = False) -> None:
        self.parts: list[np.ndarray] = []
        self.pending, self.distinct = 0, 0
        self.saturated, self.auto = False, auto

    def add(self, raw: Any) -> None:
        h, missing = hash64(raw)
        h = h[~missing]
        if self.saturated:  # keep only what can still be among the smallest HASH_TRACK_LIMIT hashes
            h = h[h < self.parts[0][-1]]
        part = np.unique(h)
        self.parts.append(part)
        self.pending += len(part)
        if self.pending > max(_Counter.COMPACT_MIN, 2 * self.distinct):
            self._compact()

    def _compact(self) -> None:
        merged = np.unique(np.concatenate(self.parts)) if self.parts else np.zeros(0, dtype=np.uint64)
        if len(merged) > HASH_TRACK_LIMIT:
            merged, self.saturated = merged[:HASH_TRACK_LIMIT], True
        self.parts, self.distinct, self.pending = [merged], len(merged), len(merged)

    def report(self, buckets: int) -> dict[str, Any]:
        self._compact()
        hashes = self.parts[0]
        distinct = len(hashes)
        if not self.saturated:
            used = len(np.unique(hashes % np.uint64(buckets))) if distinct else 0
            rate = float(1 - used / distinct) if distinct else 0.0
        else:  # the tracked hashes are the smallest ones: estimate the distinct count from them (k minimum values)
            distinct = int((distinct - 1) * 2.0 ** 64 / float(hashes[-1]))
            used = int(round(buckets * -np.expm1(-distinct / buckets)))
            rate = float(1 - used / distinct)
        return {"encoding": "hash", "buckets": buckets, "distinct": distinct, "rows_used": used,
                "collision_rate": rate, "exact": not self.saturated, **({"automatic": True} if self.auto else {})}


class _Moments:
    """Mean and population std of a dense column over chunks (Chan et al.'s merge; one chunk = numpy's nanmean /
    nanstd exactly, so a frame's statistics do not change)."""

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0
        self.single: tuple[float, float] | None = None
        self.chunks = 0

    def add(self, x: np.ndarray) -> None:
        x = x[np.isfinite(x)]
        self.chunks += 1
        if len(x) == 0:
            return
        mean, n = float(x.mean()), len(x)
        m2 = float(((x - mean) ** 2).sum())
        self.single = (mean, float(x.std())) if self.chunks == 1 else None
        delta, total = mean - self.mean, self.n + n
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.n * n / total
        self.n = total

    def result(self) -> tuple[float, float]:
        if self.n == 0:
            return 0.0, 1.0
        mean, std = self.single if self.single is not None and self.chunks == 1 else \
            (self.mean, float(np.sqrt(self.m2 / self.n)))
        return mean, std if std > 0 else 1.0


def _per_feature(value: Any, features: list[str], name: str, default: Any) -> dict[str, Any]:
    """{feature: setting} from one setting for all or a mapping (unknown features named)."""
    if isinstance(value, Mapping):
        unknown = [f for f in value if f not in features]
        if unknown:
            raise DataError(f"{name}: {unknown[0]!r} is not a sparse feature of the schema", column=unknown[0])
        return {f: value.get(f, default) for f in features}
    return {f: value for f in features}


def _raw_values(raw: pd.Series) -> pd.Series:
    """A column's values as counted: categoricals as their categories' type, integral floats as int64."""
    if isinstance(raw.dtype, pd.CategoricalDtype):
        raw = raw.astype(raw.cat.categories.dtype)
    if pd.api.types.is_float_dtype(raw.dtype):
        raw = raw.dropna().astype(np.int64)
    return raw


def id_kind(value: Any) -> str | None:
    """The canonical kind of one sparse id (mtrec-hash-1's): "integer" (ints, bools, integral floats), "string"
    (str, bytes), None when missing, else the type's name."""
    if value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and value != value):
        return None
    if isinstance(value, (str, bytes, np.str_, np.bytes_)):
        return "string"
    if isinstance(value, (bool, np.bool_, int, np.integer, float, np.floating)):
        return "integer"
    return type(value).__name__


def _as_array(values: Any) -> np.ndarray:
    """A vocabulary's values as an array: int64 when every value is a (non-bool) integer, else objects."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "iuO":
        return values.astype(np.int64) if values.dtype.kind in "iu" else values
    return _normalized(np.asarray(list(values), dtype=object))


def _normalized(arr: np.ndarray) -> np.ndarray:
    """Python scalars in an object array (or int64 when all are integers)."""
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "b":
        return np.asarray(arr.tolist(), dtype=object)
    out = np.asarray([v.item() if isinstance(v, np.generic) else v for v in arr], dtype=object)
    if len(out) and all(type(v) is int for v in out):
        return out.astype(np.int64)
    return out


def _columns_of(values: np.ndarray, feature: str) -> tuple[np.ndarray, Any, Any]:
    """(kind codes, int_value, bytes_value) Arrow columns of one feature's values."""
    import pyarrow as pa

    n = len(values)
    if values.dtype.kind == "i":
        return np.zeros(n, dtype=np.int8), pa.array(values, pa.int64()), pa.nulls(n, pa.binary())
    kind = np.empty(n, dtype=np.int8)
    ints: list[int | None] = [None] * n
    data: list[bytes | None] = [None] * n
    for i, v in enumerate(values):
        if isinstance(v, bool):
            kind[i], ints[i] = _KINDS["bool"], int(v)
        elif isinstance(v, int):
            kind[i], ints[i] = _KINDS["int"], v
        elif isinstance(v, str):
            kind[i], data[i] = _KINDS["str"], v.encode("utf-8")
        elif isinstance(v, bytes):
            kind[i], data[i] = _KINDS["bytes"], v
        else:
            raise DataError(f"feature {feature!r}: vocabulary value {v!r} ({type(v).__name__}) cannot be stored",
                            column=feature)
    return kind, pa.array(ints, pa.int64()), pa.array(data, pa.binary())


def _values_of(part: Any, feature: str) -> np.ndarray:
    """A feature's values back from its rows of the vocabulary table."""
    kind = part.column("kind").to_numpy()
    if len(kind) and (kind == _KINDS["int"]).all():
        return part.column("int_value").to_numpy()
    ints = part.column("int_value").to_pylist()
    data = part.column("bytes_value").to_pylist()
    out = np.empty(len(kind), dtype=object)
    for i, k in enumerate(kind):
        if k == _KINDS["int"]:
            out[i] = ints[i]
        elif k == _KINDS["bool"]:
            out[i] = bool(ints[i])
        elif k == _KINDS["str"]:
            out[i] = data[i].decode("utf-8")
        elif k == _KINDS["bytes"]:
            out[i] = data[i]
        else:
            raise DataError(f"vocabulary file: unknown value kind {k} for feature {feature!r}", column=feature)
    return out


def _same_values(a: np.ndarray, b: np.ndarray) -> bool:
    return len(a) == len(b) and (a.dtype == b.dtype or a.dtype.kind == "O" or b.dtype.kind == "O") and \
        all(type(x) is type(y) and x == y for x, y in zip(a.tolist(), b.tolist()))


def hash_report_lines(vocabs: Vocabularies) -> Iterable[str]:
    """One line per hashed feature: buckets, distinct values seen and the measured collision rate."""
    for f in vocabs.order:
        r = vocabs.report.get(f)
        if r and r.get("encoding") == "hash":
            how = "automatically, " if r.get("automatic") else ""
            exact = "" if r.get("exact", True) else " (estimated from a sample of the distinct values)"
            yield (f"{f}: hashed ({how}{r['buckets']:,} buckets): {r['distinct']:,} distinct values use "
                   f"{r['rows_used']:,} rows, collision rate {100 * r['collision_rate']:.2f}%{exact}")
