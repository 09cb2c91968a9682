"""Case 7: a sparse id of another kind than the vocabulary's is a DataError naming column and row (never silently
an unseen id); integers, integral floats and bools are one kind ("39" is not 39); ids beyond int64, dense values
beyond float32 and duplicate column names are DataErrors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mtrec


def test_string_id_where_integers_were_trained_names_column_and_row(adult):
    schema = mtrec.Schema.from_frame(adult.train.head(2000), tasks=adult.tasks)
    ints = [c for c in schema.sparse if pd.api.types.is_integer_dtype(adult.train[c])]
    strs = [c for c in schema.sparse if adult.train[c].dtype == object]
    assert ints and strs
    model = mtrec.build_model("shared_bottom", schema=schema, tasks=adult.tasks, dataset="adult")
    mtrec.train(model, adult.train.head(2000), epochs=1, batch_size=512, progress=False)
    rows = adult.test.head(5).copy()
    expected = model.predict(rows).to_numpy()
    as_objects = rows.astype({ints[0]: object})
    as_objects.loc[as_objects.index[3], ints[0]] = str(rows[ints[0]].iloc[3])
    row = int(rows.index[3])
    with pytest.raises(mtrec.DataError, match=rf"column '{ints[0]}', row {row}: id '.*' is of kind string"):
        model.predict(as_objects)
    bad = rows.astype({strs[0]: object})
    bad.loc[bad.index[1], strs[0]] = 7
    row = int(rows.index[1])
    with pytest.raises(mtrec.DataError, match=rf"column '{strs[0]}', row {row}: id 7 is of kind integer"):
        model.predict(bad)
    same = rows.astype({ints[0]: object})
    same[ints[0]] = [np.int64(v) if i % 2 else float(v) for i, v in enumerate(rows[ints[0]])]
    assert np.array_equal(model.predict(same).to_numpy(), expected)


def test_bools_are_integers_for_an_integer_vocabulary():
    from mtrec.data.schema import Schema
    from mtrec.data.vocab import Vocabularies

    frame = pd.DataFrame({"flag": [0, 1, 1, 0], "y": [0, 1, 0, 1]})
    vocabs = Vocabularies.fit(frame, Schema(sparse=["flag"], dense=[], tasks=["y"]))
    ids = vocabs.encode("flag", pd.Series([True, False, 1, 0, None], dtype=object))
    assert ids.tolist()[:4] == [ids[2], ids[3], ids[2], ids[3]] and ids[0] != ids[1] and ids[4] == 0
    assert vocabs.encode("flag", np.array([True, False])).tolist() == ids[:2].tolist()


def _frame(rows: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"user": rng.integers(0, 50, rows), "price": rng.normal(10, 0.01, rows),
                         "click": rng.integers(0, 2, rows)})


def _model():
    schema = mtrec.Schema.from_frame(_frame(), tasks=["click"])
    assert schema.sparse == ["user"] and schema.dense == ["price"]
    return mtrec.build_model("shared_bottom", schema=schema, tasks=["click"])


def test_ids_beyond_int64_and_huge_dense_values_in_training_are_data_errors():
    train = _frame().astype({"user": object})
    train.loc[5, "user"] = 2 ** 70
    with pytest.raises(mtrec.DataError, match=r"column 'user', row 5: id .* 2\*\*63-1"):
        mtrec.train(_model(), train, epochs=1, progress=False)
    for value in (1e300, 2 ** 1100):
        train = _frame().astype({"price": object})
        train.loc[9, "price"] = value
        with pytest.raises(mtrec.DataError, match=r"column 'price', row 9: dense value"):
            mtrec.train(_model(), train, epochs=1, progress=False)


def test_huge_dense_value_at_predict_is_a_data_error():
    train = _frame()
    model = _model()
    mtrec.train(model, train, epochs=1, batch_size=200, progress=False)
    rows = train.head(10).copy()
    rows.loc[2, "price"] = 1e300
    with pytest.raises(mtrec.DataError, match=r"column 'price', row 2: dense value"):
        model.predict(rows)
    rows.loc[2, "price"] = 3e38  # within float32, but 3e40 standard deviations away: NaN scores before
    with pytest.raises(mtrec.DataError, match=r"column 'price', row 2: dense value .* standard deviations"):
        model.predict(rows)


def test_schema_from_frame_with_duplicate_columns():
    frame = pd.DataFrame([[1, 2, 0]], columns=["a", "a", "y"])
    with pytest.raises(mtrec.DataError, match="'a' appears more than once"):
        mtrec.Schema.from_frame(frame, tasks=["y"])
