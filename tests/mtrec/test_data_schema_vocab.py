"""Schema inference and round trips; vocabularies (OOV, min_count, dense stats) and their JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mtrec.data.schema import Schema
from mtrec.data.vocab import OOV_ID, Vocabularies
from mtrec.errors import DataError


def frame() -> pd.DataFrame:
    return pd.DataFrame({
        "user": ["a", "b", "a", "c", "a"],
        "item": np.array([3, 1, 3, 2, 7], dtype=np.int64),
        "flag": [True, False, True, True, False],
        "cat": pd.Categorical(["x", "y", "x", "x", "z"]),
        "tags": [["t1"], ["t1", "t2"], [], ["t3"], ["t1"]],
        "price": [1.0, 2.0, 3.0, np.nan, 4.0],
        "click": [0, 1, 0, 1, 1],
    })


def test_from_frame_infers_kinds() -> None:
    schema = Schema.from_frame(frame(), tasks=["click"])
    assert schema.sparse == ["user", "item", "flag", "cat", "tags"]
    assert schema.dense == ["price"]
    assert schema.multi_valued == ["tags"]
    assert schema.tasks == ["click"]
    assert schema.features() == ["user", "item", "flag", "cat", "tags", "price"]
    assert schema.single_valued == ["user", "item", "flag", "cat"]


def test_from_frame_explicit_lists_win() -> None:
    schema = Schema.from_frame(frame(), tasks=["click"], sparse=["user", "tags"])
    assert schema.sparse == ["user", "tags"] and schema.dense == ["price"] and schema.multi_valued == ["tags"]
    schema = Schema.from_frame(frame(), tasks=["click"], dense=["item"])
    assert schema.dense == ["item"] and "item" not in schema.sparse


def test_from_frame_errors_name_the_column() -> None:
    with pytest.raises(DataError, match="'nope'"):
        Schema.from_frame(frame(), tasks=["nope"])
    df = frame().assign(when=pd.to_datetime(["2024-01-01"] * 5))
    with pytest.raises(DataError, match="'when'"):
        Schema.from_frame(df, tasks=["click"])


def test_schema_checks_overlaps() -> None:
    with pytest.raises(DataError, match="'a'"):
        Schema(sparse=["a"], dense=["a"], tasks=["t"])
    with pytest.raises(DataError, match="'m'"):
        Schema(sparse=["a"], dense=[], tasks=["t"], multi_valued=["m"])


def test_schema_round_trip_and_with_tasks() -> None:
    schema = Schema.from_frame(frame(), tasks=["click"])
    again = Schema.from_dict(json.loads(json.dumps(schema.to_dict())))
    assert again == schema
    new = schema.with_tasks(["click", "buy"])
    assert new.tasks == ["click", "buy"] and schema.tasks == ["click"] and new.sparse == schema.sparse


def test_vocab_ids_by_frequency_and_oov() -> None:
    df = frame()
    schema = Schema.from_frame(df, tasks=["click"])
    v = Vocabularies.fit(df, schema)
    assert v.values["user"].tolist() == ["a", "b", "c"]
    assert v.encode("user", ["a", "c", "zzz", None]).tolist() == [1, 3, OOV_ID, OOV_ID]
    assert v.encode("item", np.array([3, 99, 7])).tolist() == [1, OOV_ID, v.values["item"].tolist().index(7) + 1]
    assert v.encode("item", np.array([3.0, np.nan])).tolist() == [1, OOV_ID]
    assert v.encode("tags", ["t1", "t9"]).tolist() == [1, OOV_ID]
    assert v.encode("flag", np.array([True, False])).tolist() == [1, 2]
    assert v.encode("cat", pd.Series(pd.Categorical(["z", "q", None]))).tolist() == [3, OOV_ID, OOV_ID]
    assert v.num_embeddings("user") == 4
    assert v.feature_specs() == [{"name": f, "num_embeddings": len(v.values[f]) + 1} for f in schema.sparse]


def test_vocab_min_count_and_dense_stats() -> None:
    df = frame()
    schema = Schema.from_frame(df, tasks=["click"])
    v = Vocabularies.fit(df, schema, min_count=2)
    assert v.values["user"].tolist() == ["a"]
    assert v.encode("user", ["b"]).tolist() == [OOV_ID]
    mean, std = v.dense_stats["price"]
    assert mean == pytest.approx(2.5) and std == pytest.approx(np.std([1.0, 2.0, 3.0, 4.0]))
    z = v.standardize("price", pd.Series([2.5, np.nan, 4.0]))
    assert z.dtype == np.float32 and z[0] == 0.0 and z[1] == 0.0 and z[2] == pytest.approx(1.5 / std)


def test_vocab_json_round_trip() -> None:
    df = frame()
    schema = Schema.from_frame(df, tasks=["click"])
    v = Vocabularies.fit(df, schema)
    again = Vocabularies.from_dict(json.loads(json.dumps(v.to_dict())))
    assert again == v
    for f in schema.sparse:
        raw = pd.Series([x for cell in df[f] for x in cell]) if f == "tags" else df[f]
        assert np.array_equal(again.encode(f, raw), v.encode(f, raw))
    with pytest.raises(DataError, match="format"):
        Vocabularies.from_dict({"format_version": 99})


def test_unknown_feature_is_a_data_error() -> None:
    v = Vocabularies.fit(frame(), Schema.from_frame(frame(), tasks=["click"]))
    with pytest.raises(DataError, match="'nope'"):
        v.num_embeddings("nope")
