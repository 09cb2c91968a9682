"""Stable hashing of categorical values into a fixed number of embedding rows (`encoding: hash`).

A hashed feature needs no vocabulary: a value's row is a pure function of the value's canonical form and the
number of buckets, so training, predict, batch scoring and serving agree in every process, on every machine and
in every version of mtrec (the spec below is pinned, and tests pin the rows of a few values).

Spec `mtrec-hash-1` (the canonical form, then a 64-bit hash h; the row is 1 + h mod buckets, row 0 is missing):
- missing (None, NaN, pandas NA) -> row 0, never hashed;
- integers (Python/numpy ints, bools as 0/1, floats with an integral value) -> the int64 value, then splitmix64's
  finalizer of (value + 0x9E3779B97F4A7C15) mod 2^64;
- strings -> their UTF-8 bytes, bytes as they are -> the 8-byte BLAKE2b digest (RFC 7693, key-less, person
  b"mtrec-hash-1") read little-endian.
Integers are hashed with numpy in one vectorized pass (~5 ms per million values); strings are dictionary-encoded
first, so each distinct string is hashed once per batch (and remembered across batches by a bounded cache).
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import numpy as np
import pandas as pd

SPEC = "mtrec-hash-1"
_PERSON = b"mtrec-hash-1"
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
STRING_CACHE = 1 << 20  # distinct strings whose hash is remembered between batches


def splitmix64(values: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer of (x + golden ratio) for int64/uint64 values, as uint64 (vectorized)."""
    with np.errstate(over="ignore"):
        z = values.astype(np.int64, copy=False).view(np.uint64) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


@functools.lru_cache(maxsize=STRING_CACHE)
def _bytes_hash(value: str | bytes) -> int:
    data = value.encode("utf-8") if isinstance(value, str) else value
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, person=_PERSON).digest(), "little")


def _scalar_hash(value: Any) -> int | None:
    """The 64-bit hash of one non-missing value, None for a missing one (object columns, one distinct value)."""
    if isinstance(value, (str, bytes)):
        return _bytes_hash(value)
    if value is None or (isinstance(value, float) and value != value) or value is pd.NA:
        return None
    if isinstance(value, (bool, np.bool_, int, np.integer)) or (isinstance(value, (float, np.floating))
                                                                and float(value).is_integer()):
        return int(splitmix64(np.array([int(value)], dtype=np.int64))[0])
    raise TypeError(f"cannot hash a {type(value).__name__} id ({value!r}); ids are integers or strings")


def hash64(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """(uint64 hashes, missing mask) of array-like `values` (a Series, Index, array or list) under SPEC."""
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype):
        cat_h, cat_missing = hash64(values.cat.categories)
        codes = values.cat.codes.to_numpy()
        out = np.where(codes >= 0, cat_h[np.maximum(codes, 0)], np.uint64(0))
        return out, (codes < 0) | cat_missing[np.maximum(codes, 0)]
    if isinstance(values, (pd.Series, pd.Index)):
        arr = values.to_numpy()
    else:  # a list keeps its values' types (numpy would turn [1, "a"] into strings)
        arr = np.asarray(values, dtype=object) if isinstance(values, (list, tuple)) else np.asarray(values)
    if arr.dtype.kind in "US":
        arr = arr.astype(object)
    if arr.dtype.kind in "iub":
        return splitmix64(arr.astype(np.int64, copy=False)), np.zeros(len(arr), dtype=bool)
    if arr.dtype.kind == "f":
        missing = np.isnan(arr)
        return splitmix64(np.where(missing, 0, arr).astype(np.int64)), missing
    codes, uniques = pd.factorize(arr, use_na_sentinel=True)
    if len(uniques) == 0:
        return np.zeros(len(arr), dtype=np.uint64), np.ones(len(arr), dtype=bool)
    hashes = [_scalar_hash(u) for u in uniques]
    unique_missing = np.array([h is None for h in hashes], dtype=bool)
    table = np.array([0 if h is None else h for h in hashes], dtype=np.uint64)
    missing = codes < 0
    if unique_missing.any():
        missing |= unique_missing[np.maximum(codes, 0)] & (codes >= 0)
    return np.where(missing, np.uint64(0), table[np.maximum(codes, 0)]), missing


def bucket_ids(values: Any, buckets: int) -> np.ndarray:
    """Row ids (int64) of `values` in a hashed table of `buckets` + 1 rows: 1 + hash mod buckets, 0 if missing."""
    if buckets < 1:
        raise ValueError(f"buckets must be >= 1, got {buckets}")
    h, missing = hash64(values)
    ids = (h % np.uint64(buckets)).astype(np.int64) + 1
    ids[missing] = 0
    return ids
