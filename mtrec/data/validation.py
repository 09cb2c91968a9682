"""Frame validation: every problem raises DataError naming the column and the first bad row (index label).

Rules: sparse ids may be strings, bools or integers; numbers in a sparse column must be integers >= 0 (a
float column is accepted when every value is integral). NaN/None in a sparse column is allowed and encodes
to the OOV id 0; NaN/None in a multi-valued column is an empty bag. NaN in a dense column is allowed (it
becomes the training mean); inf is not. Labels must be 0/1/True/False and never NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

from mtrec.data.schema import LIST_TYPES, Schema
from mtrec.errors import DataError

_OK_ID_TYPES = ("string", "empty", "boolean", "bytes")
_NUMERIC_ID_TYPES = ("integer", "floating", "mixed-integer-float", "decimal", "integer-na")
_NUMBER = (bool, int, float, np.bool_, np.number)
DENSE_LIMIT = float(np.finfo(np.float32).max)  # the network computes in float32


def validate_frame(
    df: pd.DataFrame, schema: Schema, tasks: Sequence[str] | None = None, require_labels: bool = True
) -> None:
    """Raise DataError (column + first bad row) if `df` cannot be encoded with `schema` and `tasks`."""
    check_frame(df, schema, tasks, require_labels)


def check_frame(
    df: pd.DataFrame, schema: Schema, tasks: Sequence[str] | None = None, require_labels: bool = True,
    flat: Mapping[str, tuple[np.ndarray, pd.Series]] | None = None,
) -> tuple[dict[str, tuple[np.ndarray, pd.Series]], list[str] | None]:
    """Validate and return the flattened multi-valued columns ({name: (lengths, values)}) and the label
    columns to encode (None when labels are not required and some are absent), so encoding reuses the work.
    `flat` holds multi-valued columns already flattened (by Arrow, from list columns): their values are checked,
    not flattened again, and `df` need not hold them."""
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame, got {type(df).__name__}")
    if len(df) == 0:
        raise DataError(f"empty frame: no rows to encode (columns: {list(df.columns)})")
    tasks = list(schema.tasks if tasks is None else tasks)
    leak = [c for c in tasks if c in set(schema.features())]
    if leak:
        raise DataError(f"column {leak[0]!r} is both a feature and a label (row: all rows); drop it from the "
                        "schema's features", column=leak[0])
    dup = set(df.columns[df.columns.duplicated()]) & {*schema.features(), *tasks}
    if dup:
        col = sorted(map(str, dup))[0]
        raise DataError(f"column {col!r} appears more than once in the frame (row: all rows)", column=col)
    given = dict(flat or {})
    for col in schema.features():
        if col not in df.columns and col not in given:
            raise DataError(f"column {col!r} is missing from the frame (row: all rows); "
                            f"the frame has {list(df.columns)}", column=col)
    label_cols: list[str] | None = tasks
    absent = [c for c in tasks if c not in df.columns]
    if absent and require_labels:
        raise DataError(f"label column {absent[0]!r} is missing from the frame (row: all rows)", column=absent[0])
    if absent:
        label_cols = None
    multi = set(schema.multi_valued)
    lists: dict[str, tuple[np.ndarray, pd.Series]] = {}
    for col in schema.sparse:
        if col in given:
            lists[col] = _checked_flat(given[col], df.index, col)
        elif col in multi:
            lists[col] = flatten_lists(df[col], col)
        else:
            _check_ids(df[col], col, _row_of(df.index), nested="a list")
    for name, seq in schema.sequences.items():
        if seq.actions is not None and not np.array_equal(lists[name][0], lists[seq.actions][0]):
            i = int(np.argmax(lists[name][0] != lists[seq.actions][0]))
            raise row_error(seq.actions, df.index[i], f"has {lists[seq.actions][0][i]} values but sequence {name!r} has "
                        f"{lists[name][0][i]}; an action column needs one value per sequence item")
    for col in schema.dense:
        _check_dense(df[col], col, df.index)
    for col in label_cols or ():
        _check_label(df[col], col, df.index)
    return lists, label_cols


def flatten_lists(s: pd.Series, col: str) -> tuple[np.ndarray, pd.Series]:
    """Lengths (int64, one per row) and the concatenated, validated values of a multi-valued column."""
    cells = s.to_numpy(dtype=object)
    is_list = np.fromiter((isinstance(c, LIST_TYPES) for c in cells), dtype=bool, count=len(cells))
    if not is_list.all():
        bad = ~is_list & ~pd.isna(s).to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            raise row_error(col, s.index[i], f"multi-valued column needs a list of ids, got "
                        f"{type(cells[i]).__name__} {_short(cells[i])}")
        cells = cells.copy()
        for i in np.flatnonzero(~is_list):
            cells[i] = ()
    lengths = np.fromiter((len(c) for c in cells), dtype=np.int64, count=len(cells))
    if len(cells) and all(isinstance(c, np.ndarray) for c in cells):
        if any(c.ndim != 1 for c in cells):
            i = next(i for i, c in enumerate(cells) if c.ndim != 1)
            raise row_error(col, s.index[i], "nested list in a multi-valued column")
        values = pd.Series(np.concatenate(cells) if lengths.sum() else np.zeros(0, dtype=np.int64))
    else:
        values = pd.Series(list(chain.from_iterable(cells)), dtype=None if lengths.sum() else np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    row_of = _flat_row_of(s.index, offsets)
    _check_ids(values, col, row_of, nested="a nested list")
    return lengths, values


def _checked_flat(column: tuple[np.ndarray, pd.Series], index: pd.Index, col: str) -> tuple[np.ndarray, pd.Series]:
    """An already flattened multi-valued column (lengths, values), its values checked as flatten_lists checks them."""
    lengths, values = column
    if len(lengths) != len(index) or int(lengths.sum()) != len(values):
        raise ValueError(f"column {col!r}: {len(lengths)} lengths summing to {int(lengths.sum())} for {len(index)} "
                         f"rows and {len(values)} values")
    _check_ids(values, col, _flat_row_of(index, np.concatenate([[0], np.cumsum(lengths)])), nested="a nested list")
    return lengths, values


def _row_of(index: pd.Index) -> Callable[[int], Any]:
    """Row label of a position in the frame."""
    return lambda i: index[i]


def _flat_row_of(index: pd.Index, offsets: np.ndarray) -> Callable[[int], Any]:
    """Row label of a position in the concatenated values of a multi-valued column."""
    return lambda i: index[int(np.searchsorted(offsets, i, side="right")) - 1]


def row_error(col: str, row: Any, what: str) -> DataError:
    """A DataError whose message starts with the column and the row (numpy labels shown as Python scalars)."""
    row = row.item() if isinstance(row, np.generic) else row
    return DataError(f"column {col!r}, row {row!r}: {what}", column=col, row=row)


def _check_ids(s: pd.Series, col: str, row_of: Callable[[int], Any], nested: str) -> None:
    """Sparse ids: strings/bools, or integers >= 0; NaN allowed (-> OOV); lists and other objects rejected."""
    dtype = s.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        cats = pd.Series(dtype.categories)
        if pd.api.types.is_numeric_dtype(cats.dtype):
            bad_cat = _bad_id_mask(cats.to_numpy(dtype=np.float64))
            codes = s.cat.codes.to_numpy()
            bad = (codes >= 0) & bad_cat[np.maximum(codes, 0)]
            _raise_first_bad_id(s, bad, col, row_of)
        return
    if pd.api.types.is_bool_dtype(dtype) or isinstance(dtype, pd.StringDtype):
        return
    if pd.api.types.is_numeric_dtype(dtype):
        x = s.to_numpy(dtype=np.float64, na_value=np.nan)
        _raise_first_bad_id(s, _bad_id_mask(x), col, row_of)
        return
    if dtype != object:
        raise row_error(col, row_of(0), f"dtype {dtype} cannot be a categorical id; use strings or integers")
    kind = pd.api.types.infer_dtype(s, skipna=True)
    if kind in _OK_ID_TYPES:
        return
    if kind in _NUMERIC_ID_TYPES:
        x = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        _raise_first_bad_id(s, _bad_id_mask(x), col, row_of)
        return
    values = s.to_numpy(dtype=object)
    for i, v in enumerate(values):
        if isinstance(v, LIST_TYPES):
            raise row_error(col, row_of(i), f"found {nested} {_short(v)} where one id was expected"
                        + ("; declare the column multi-valued" if nested == "a list" else ""))
        if isinstance(v, _NUMBER) and not isinstance(v, (bool, np.bool_)):
            if _bad_id_mask(np.array([float(v)]))[0]:
                raise row_error(col, row_of(i), f"id {v!r} is not an integer in 0 .. 2**63-1")
        elif not (isinstance(v, (str, bytes, bool, np.bool_)) or v is None or _is_nan(v)):
            raise row_error(col, row_of(i), f"id of type {type(v).__name__} ({_short(v)}); use strings or integers")


def _bad_id_mask(x: np.ndarray) -> np.ndarray:
    """True where a numeric id is not NaN and is inf, negative, not integral or beyond int64 (>= 2**63)."""
    with np.errstate(invalid="ignore"):
        return ~np.isnan(x) & (~np.isfinite(x) | (x < 0) | (x != np.floor(x)) | (x >= 2.0 ** 63))


def _raise_first_bad_id(s: pd.Series, bad: np.ndarray, col: str, row_of: Callable[[int], Any]) -> None:
    """Raise for the first True in `bad`, if any."""
    if bad.any():
        i = int(np.argmax(bad))
        raise row_error(col, row_of(i), f"id {s.iloc[i]!r} is not an integer in 0 .. 2**63-1 (numeric ids must be "
                    "non-negative 64-bit integers)")


def _check_dense(s: pd.Series, col: str, index: pd.Index) -> None:
    """Dense values: numbers (NaN allowed, inf not)."""
    if isinstance(s.dtype, pd.CategoricalDtype) or not (pd.api.types.is_numeric_dtype(s.dtype)
                                                        or s.dtype == object):
        raise row_error(col, index[0], f"dense column has dtype {s.dtype}; it needs numbers")
    if s.dtype == object:
        values = s.to_numpy(dtype=object)
        ok = np.fromiter((isinstance(v, _NUMBER) or v is None for v in values), dtype=bool, count=len(values))
        if not ok.all():
            i = int(np.argmax(~ok))
            raise row_error(col, index[i], f"dense column holds {type(values[i]).__name__} {_short(values[i])}; "
                        "it needs numbers")
    try:
        x = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    except OverflowError:  # Python ints beyond what a float64 holds
        x = np.array([float("inf") if isinstance(v, int) and abs(v) > 2 ** 1023 else v for v in s], dtype=np.float64)
    bad = ~np.isnan(x) & ~(np.abs(x) <= DENSE_LIMIT)
    if bad.any():
        i = int(np.argmax(bad))
        raise row_error(col, index[i], f"dense value {s.iloc[i]!r} is not a finite number within float32's range "
                    f"(|x| <= {DENSE_LIMIT:.3g})")


def _check_label(s: pd.Series, col: str, index: pd.Index) -> None:
    """Labels: 0/1/True/False, no NaN."""
    na = pd.isna(s).to_numpy()
    if na.any():
        i = int(np.argmax(na))
        raise row_error(col, index[i], "label is NaN/missing; every row needs a 0/1 label")
    if pd.api.types.is_bool_dtype(s.dtype):
        return
    if s.dtype == object:
        values = s.to_numpy(dtype=object)
        ok = np.fromiter((isinstance(v, _NUMBER) for v in values), dtype=bool, count=len(values))
        if not ok.all():
            i = int(np.argmax(~ok))
            raise row_error(col, index[i], f"label {_short(values[i])} is not binary (0/1/True/False)")
    elif not pd.api.types.is_numeric_dtype(s.dtype) or isinstance(s.dtype, pd.CategoricalDtype):
        raise row_error(col, index[0], f"label column has dtype {s.dtype}; labels must be 0/1/True/False")
    x = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = (x != 0) & (x != 1)
    if bad.any():
        i = int(np.argmax(bad))
        raise row_error(col, index[i], f"label {s.iloc[i]!r} is not binary (0/1/True/False)")


def require_both_classes(labels: np.ndarray, tasks: Sequence[str], what: str = "training") -> None:
    """DataError naming the first task whose [N, T] `labels` (checked 0/1) hold one class only: a task needs
    positive and negative examples to be learned at all."""
    for j, task in enumerate(tasks):
        column = np.asarray(labels)[:, j]
        if len(column) and column.min() == column.max():
            raise DataError(f"label column {task!r} holds only label {int(column[0])} in the {what} data "
                            f"(row: all rows): a task needs positive and negative examples", column=task)


def _is_nan(v: Any) -> bool:
    """True for float NaN and pandas NA/NaT scalars."""
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _short(v: Any, limit: int = 60) -> str:
    """repr(v), cut to `limit` characters."""
    r = repr(v)
    return r if len(r) <= limit else r[: limit - 3] + "..."
