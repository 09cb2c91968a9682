"""Every DataError case names the column and the first bad row (index label)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mtrec.data.batches import encode_frame
from mtrec.data.schema import Schema
from mtrec.data.validation import validate_frame
from mtrec.data.vocab import Vocabularies
from mtrec.errors import DataError

SCHEMA = Schema(sparse=["user", "item", "tags"], dense=["price"], tasks=["click", "like"], multi_valued=["tags"])


def good_frame() -> pd.DataFrame:
    """Five valid rows with a non-default index, so row labels differ from positions."""
    return pd.DataFrame({
        "user": ["a", "b", "c", "a", "b"],
        "item": [1, 2, 3, 4, 5],
        "tags": [["x"], ["x", "y"], [], ["z"], ["y"]],
        "price": [1.0, 2.5, np.nan, 4.0, 0.5],
        "click": [0, 1, 0, 1, 1],
        "like": [True, False, False, True, False],
    }, index=[10, 11, 12, 13, 14])


def raises(df: pd.DataFrame, column: str | None, row: object, schema: Schema = SCHEMA, **kw) -> DataError:
    """Assert validate_frame raises a DataError naming `column` and `row` (in the message and attributes)."""
    with pytest.raises(DataError) as info:
        validate_frame(df, schema, **kw)
    err = info.value
    assert err.column == column and err.row == row
    if column is not None:
        assert repr(column) in str(err)
    if row is not None:
        assert f"row {row!r}" in str(err)
    return err


def test_good_frame_passes() -> None:
    validate_frame(good_frame(), SCHEMA)


def test_empty_frame() -> None:
    err = raises(good_frame().iloc[:0], None, None)
    assert "empty" in str(err)


def test_not_a_frame() -> None:
    with pytest.raises(DataError, match="DataFrame"):
        validate_frame({"user": ["a"]}, SCHEMA)  # type: ignore[arg-type]


@pytest.mark.parametrize("column", ["user", "tags", "price"])
def test_missing_feature_column(column: str) -> None:
    err = raises(good_frame().drop(columns=[column]), column, None)
    assert "missing" in str(err)


def test_missing_label_column() -> None:
    df = good_frame().drop(columns=["like"])
    assert "missing" in str(raises(df, "like", None))
    validate_frame(df, SCHEMA, require_labels=False)


def test_nan_label() -> None:
    df = good_frame()
    df["click"] = df["click"].astype(float)
    df.loc[12, "click"] = np.nan
    assert "NaN" in str(raises(df, "click", 12))


@pytest.mark.parametrize("bad", [2, -1, 0.5, "yes"])
def test_non_binary_label(bad: object) -> None:
    df = good_frame()
    df["like"] = df["like"].astype(object)
    df.loc[13, "like"] = bad
    assert "binary" in str(raises(df, "like", 13))


def test_string_in_dense_column() -> None:
    df = good_frame()
    df["price"] = df["price"].astype(object)
    df.loc[11, "price"] = "cheap"
    assert "numbers" in str(raises(df, "price", 11))


def test_inf_in_dense_column() -> None:
    df = good_frame()
    df.loc[14, "price"] = np.inf
    raises(df, "price", 14)


def test_non_list_in_multi_valued_column() -> None:
    df = good_frame()
    df.at[12, "tags"] = "x"
    assert "list" in str(raises(df, "tags", 12))


def test_nested_list_in_multi_valued_column() -> None:
    df = good_frame()
    df.at[13, "tags"] = ["z", ["w"]]
    assert "nested" in str(raises(df, "tags", 13))


def test_negative_id_inside_multi_valued_column() -> None:
    df = good_frame()
    df["tags"] = [[1], [2, 3], [], [4, -5], [6]]
    raises(df, "tags", 13)


def test_list_in_single_valued_column() -> None:
    df = good_frame()
    df["user"] = df["user"].astype(object)
    df.at[11, "user"] = ["a", "b"]
    assert "multi-valued" in str(raises(df, "user", 11))


@pytest.mark.parametrize("bad", [-1, 3.5])
def test_bad_numeric_id(bad: float) -> None:
    df = good_frame()
    df["item"] = df["item"].astype(float)
    df.loc[12, "item"] = bad
    assert "integer" in str(raises(df, "item", 12))


def test_negative_id_in_int_column() -> None:
    df = good_frame()
    df.loc[14, "item"] = -3
    raises(df, "item", 14)


def test_mixed_object_id_column_with_bad_number() -> None:
    df = good_frame()
    df["user"] = pd.Series(["a", 7, "c", 2.5, "b"], index=df.index, dtype=object)
    raises(df, "user", 13)


def test_unsupported_id_type() -> None:
    df = good_frame()
    df["user"] = pd.Series(["a", {"k": 1}, "c", "a", "b"], index=df.index, dtype=object)
    raises(df, "user", 11)


def test_nan_sparse_is_oov_and_nan_dense_is_mean() -> None:
    df = good_frame()
    vocabs = Vocabularies.fit(df, SCHEMA)
    test = df.copy()
    test["user"] = test["user"].astype(object)
    test.loc[10, "user"] = None
    test["item"] = test["item"].astype(float)
    test.loc[11, "item"] = np.nan
    test.at[12, "tags"] = None
    enc = encode_frame(test, SCHEMA, vocabs)
    b = enc.take(np.arange(5))
    kjt = b.sparse.to_dict()
    assert kjt["user"].values()[0].item() == 0
    assert kjt["item"].values()[1].item() == 0
    assert kjt["tags"].lengths().tolist() == [1, 2, 0, 1, 1]
    assert b.dense[2, 0].item() == 0.0


def test_encode_frame_validates_first() -> None:
    df = good_frame()
    vocabs = Vocabularies.fit(df, SCHEMA)
    df.loc[11, "click"] = 7
    with pytest.raises(DataError, match="'click'"):
        encode_frame(df, SCHEMA, vocabs)


def test_label_that_is_also_a_feature() -> None:
    df = good_frame()
    assert "both a feature and a label" in str(raises(df, "item", None, tasks=["click", "item"]))


def test_duplicate_column() -> None:
    df = pd.concat([good_frame(), good_frame()[["user"]]], axis=1)
    raises(df, "user", None)
