"""Hashed features: a value's row is pinned (the same in every process, machine and version), every input type of
the same value hashes alike, a hashed model trains, saves and loads with no vocabulary, and the fit reports the
measured collision rate."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import mtrec
from mtrec.data.hashing import bucket_ids, hash64
from mtrec.data.vocab import Vocabularies

VALUES = [0, 1, 42, 2 ** 40 + 7, "user_1", "ünïcode", "", b"raw", True, 3.0, None, float("nan")]
# mtrec-hash-1 with 2**20 buckets; these rows may never change (checkpoints and serving rely on them)
PINNED = [904624, 154818, 749206, 596559, 681777, 252917, 761338, 575762, 154818, 102382, 0, 0]


def test_pinned_buckets():
    assert bucket_ids(VALUES, 2 ** 20).tolist() == PINNED
    assert hex(int(hash64([0])[0][0])) == "0xe220a8397b1dcdaf"  # splitmix64's published first output from 0


def test_every_container_of_a_value_hashes_alike():
    ints = [0, 1, 42, 2 ** 40 + 7]
    expected = PINNED[:4]
    for form in (np.array(ints), np.array(ints, dtype=np.uint64), pd.Series(ints), pd.Series(ints, dtype="Int64"),
                 pd.Series([float(v) for v in ints]), pd.Series(pd.Categorical(ints)), pd.Index(ints)):
        assert bucket_ids(form, 2 ** 20).tolist() == expected, type(form)
    strings = ["user_1", "ünïcode", ""]
    for form in (np.array(strings), pd.Series(strings), pd.Series(strings, dtype="string"),
                 pd.Series(pd.Categorical(strings))):
        assert bucket_ids(form, 2 ** 20).tolist() == PINNED[4:7], type(form)


def test_the_same_rows_in_another_process():
    code = ("import json, sys; from mtrec.data.hashing import bucket_ids; "
            f"print(json.dumps(bucket_ids({VALUES[:10]!r}, 2 ** 20).tolist()))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert json.loads(out.stdout) == PINNED[:10]


@pytest.fixture(scope="module")
def data():
    return mtrec.datasets.load("synthetic", rows=20_000, cardinality=50_000, seed=3)


def test_a_hashed_model_trains_saves_and_loads_without_a_vocabulary(data, tmp_path):
    schema = mtrec.Schema.from_frame(data.train.drop(columns=data.new_tasks), tasks=data.tasks,
                                     hash_buckets={"s0": 4096, "m0": 2048})
    model = mtrec.build_model("mptrec", schema=schema, tasks=data.tasks)
    mtrec.train(model, data.train, valid=data.valid, epochs=1, progress=False)
    vocabs = model.vocabs
    assert vocabs.encoding("s0") == "hash" and vocabs.num_embeddings("s0") == 4097 and "s0" not in vocabs.values
    report = vocabs.report["s0"]
    distinct = data.train["s0"].nunique()
    used = len(np.unique(bucket_ids(data.train["s0"].unique(), 4096)))
    assert report["distinct"] == distinct and report["rows_used"] == used
    assert report["collision_rate"] == pytest.approx(1 - used / distinct)
    path = mtrec.save(model, tmp_path / "hashed")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["vocabularies"]["features"]["s0"] == {"encoding": "hash", "buckets": 4096, "hash": "mtrec-hash-1",
                                                          "fit": report}
    loaded = mtrec.load(path)
    assert np.array_equal(loaded.predict(data.test).to_numpy(), model.predict(data.test).to_numpy())
    assert mtrec.evaluate(loaded, data.test)["task0"]["auc"] > 0.6


def test_features_above_the_threshold_are_hashed_automatically(data):
    vocabs = Vocabularies.fit(data.train, data.schema, hash_above=1000)
    hashed = [f for f in data.schema.sparse if vocabs.encoding(f) == "hash"]
    assert hashed and all(vocabs.report[f]["automatic"] and vocabs.num_embeddings(f) == 1001 for f in hashed)
    assert all(data.train[f].nunique() > 1000 for f in hashed if f != "m0")
