"""Built-in datasets on real data: adult's fixed split and labels, movielens history without leakage."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from mtrec.data import datasets
from mtrec.data.batches import encode_frame
from mtrec.data.datasets.adult import LEAKY
from mtrec.data.datasets.movielens import history
from mtrec.data.vocab import Vocabularies


@pytest.fixture(scope="module")
def adult() -> datasets.Dataset:
    return datasets.load("adult")


@pytest.fixture(scope="module")
def movielens() -> datasets.Dataset:
    return datasets.load("movielens-100k")


def test_unknown_dataset_lists_names() -> None:
    with pytest.raises(ValueError, match="adult.*movielens-100k.*synthetic"):
        datasets.load("imagenet")


def test_adult_split_exact(adult: datasets.Dataset) -> None:
    assert (len(adult.train), len(adult.valid), len(adult.test)) == (34189, 4884, 9769)
    perm = np.random.RandomState(2024).permutation(48842)
    assert list(adult.train.index[:5]) == perm[:5].tolist()
    assert list(adult.test.index[-3:]) == perm[-3:].tolist()
    all_rows = np.concatenate([adult.train.index, adult.valid.index, adult.test.index])
    assert len(np.unique(all_rows)) == 48842


def test_adult_tasks_and_label_rates(adult: datasets.Dataset) -> None:
    assert adult.tasks == ["income", "married"] and adult.new_tasks == ["education"]
    assert adult.schema.tasks == ["income", "married"]
    rates = adult.train[["income", "married", "education"]].mean()
    assert 0.22 < rates["income"] < 0.26
    assert 0.45 < rates["married"] < 0.49
    assert 0.23 < rates["education"] < 0.27
    for col in ("income", "married", "education"):
        assert adult.train[col].dtype == np.int64 and set(adult.train[col].unique()) == {0, 1}


def test_adult_features_do_not_leak(adult: datasets.Dataset) -> None:
    features = set(adult.schema.features())
    assert not features & {*LEAKY, "income", "married", "education"}
    assert not (set(LEAKY) - {"education"}) & set(adult.train.columns)
    assert set(adult.train["education"].unique()) == {0, 1}  # the new task's label, not the raw column
    assert adult.schema.dense == [] and len(adult.schema.sparse) == 10


def test_adult_numeric_columns_are_buckets(adult: datasets.Dataset) -> None:
    for col in ("age", "fnlwgt", "hours-per-week", "capital-gain", "capital-loss"):
        assert adult.train[col].dtype == np.int64
        assert 2 <= adult.train[col].nunique() <= 65
    assert adult.train["capital-gain"].eq(0).mean() > 0.85


def test_adult_encode_is_fast(adult: datasets.Dataset) -> None:
    v = Vocabularies.fit(adult.train, adult.schema)
    start = time.perf_counter()
    enc = encode_frame(adult.train, adult.schema, v)
    assert time.perf_counter() - start < 1.0
    assert len(enc) == 34189 and enc.labels.shape == (34189, 2)
    new = encode_frame(adult.valid, adult.schema.with_tasks(adult.new_tasks), v)
    assert new.labels.shape == (4884, 1)


def test_movielens_split_and_tasks(movielens: datasets.Dataset) -> None:
    m = movielens
    assert (len(m.train), len(m.valid), len(m.test)) == (80000, 10000, 10000)
    assert m.train["timestamp"].max() <= m.valid["timestamp"].min()
    assert m.valid["timestamp"].max() <= m.test["timestamp"].min()
    assert m.tasks == ["like", "love"] and m.new_tasks == ["dislike"]
    full = pd.concat([m.train, m.valid, m.test])
    assert (full["like"] == (full["rating"] >= 4)).all() and (full["love"] == (full["rating"] == 5)).all()
    assert (full["dislike"] == (full["rating"] <= 2)).all()
    assert set(m.schema.multi_valued) == {"genres", "hist_items"}
    assert not set(m.schema.features()) & {"rating", "timestamp", "like", "love", "dislike"}


def test_movielens_history_has_no_leakage(movielens: datasets.Dataset) -> None:
    full = pd.concat([movielens.train, movielens.valid, movielens.test])
    by_user = {u: g for u, g in full[["user_id", "item_id", "timestamp"]].groupby("user_id")}
    sample = full.sample(300, random_state=0)
    for _, row in sample.iterrows():
        hist = list(row["hist_items"])
        assert len(hist) <= 20
        g = by_user[row["user_id"]]
        earlier = g[g["timestamp"] < row["timestamp"]].sort_values("timestamp", kind="stable")
        assert len(hist) == min(20, len(earlier))
        assert set(hist) <= set(earlier["item_id"])
        assert set(hist).isdisjoint(set(g.loc[g["timestamp"] >= row["timestamp"], "item_id"]))


def test_history_equal_timestamps_are_not_history() -> None:
    users = np.array([1, 1, 1, 2, 1])
    items = np.array([10, 11, 12, 20, 13])
    times = np.array([5, 5, 7, 1, 9])
    hist = history(users, items, times, max_len=2)
    assert [h.tolist() for h in hist] == [[], [], [10, 11], [], [11, 12]]


def test_movielens_encodes(movielens: datasets.Dataset) -> None:
    v = Vocabularies.fit(movielens.train, movielens.schema)
    enc = encode_frame(movielens.valid, movielens.schema, v)
    b = enc.take(np.arange(64))
    lengths = b.sparse.to_dict()["hist_items"].lengths()
    assert lengths.max() <= 20
    assert lengths.tolist() == [len(h) for h in movielens.valid["hist_items"].iloc[:64]]
