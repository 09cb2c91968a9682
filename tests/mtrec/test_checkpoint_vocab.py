"""Vocabularies live in a columnar file inside the checkpoint (listed in the manifest with its sha256), not in
manifest.json: every value type round-trips, a damaged file is refused, a big vocabulary keeps the manifest small,
and checkpoints of the old format (JSON lists in the manifest) still load."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

import mtrec
from mtrec.checkpoint import CheckpointError
from mtrec.data.vocab import VOCAB_FILE, Vocabularies


def test_every_value_type_round_trips(tmp_path):
    vocabs = Vocabularies({"ints": np.array([5, 3, 2 ** 50], dtype=np.int64), "strs": ["b", "ä", ""],
                           "flags": [True, False], "mixed": [7, "7", b"x", False]},
                          {"price": (2.5, 1.25)}, hashed={"user": 1 << 20},
                          order=["ints", "user", "strs", "flags", "mixed"])
    path = vocabs.write(tmp_path / VOCAB_FILE)
    entry = json.loads(json.dumps(vocabs.manifest_entry()))
    again = Vocabularies.read(path, entry)
    assert again == vocabs and again.order == vocabs.order and again.hashed == {"user": 1 << 20}
    for f in ("ints", "strs", "flags", "mixed"):
        assert [type(v) for v in again.values[f].tolist()] == [type(v) for v in vocabs.values[f].tolist()], f
    assert again.encode("mixed", [7, "7", b"x", False, "nope"]).tolist() == [1, 2, 3, 4, 0]
    assert again.encode("ints", np.array([2 ** 50, 3, 4])).tolist() == [3, 2, 0]


@pytest.fixture(scope="module")
def saved(trained_adult_mptrec, tmp_path_factory):
    model, _ = trained_adult_mptrec
    return model, mtrec.save(model, tmp_path_factory.mktemp("ckpt") / "model")


def test_the_manifest_lists_the_vocabulary_file_and_holds_no_values(saved):
    model, path = saved
    manifest = json.loads((path / "manifest.json").read_text())
    entry = manifest["vocabularies"]
    assert entry["format_version"] == 2 and entry["file"] == VOCAB_FILE and "sparse" not in entry
    assert set(manifest["files"][VOCAB_FILE]) == {"sha256", "bytes"}
    assert {f: e["size"] for f, e in entry["features"].items()} == {f: len(v) for f, v in model.vocabs.values.items()}


def test_a_damaged_vocabulary_file_is_refused(saved, tmp_path):
    import shutil

    _, path = saved
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    data = bytearray((copy / VOCAB_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / VOCAB_FILE).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="vocabularies.parquet is corrupt"):
        mtrec.load(copy)


def test_an_old_format_checkpoint_still_loads(saved, adult, tmp_path):
    """Format 1 held the vocabularies as JSON lists in manifest.json and had no vocabulary file."""
    import shutil

    model, path = saved
    old = tmp_path / "old"
    shutil.copytree(path, old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["vocabularies"] = model.vocabs.to_dict()
    del manifest["files"]
    (old / VOCAB_FILE).unlink()
    (old / "manifest.json").write_text(json.dumps(manifest))
    loaded = mtrec.load(old)
    assert loaded.vocabs == model.vocabs
    assert np.array_equal(loaded.predict(adult.test).to_numpy(), model.predict(adult.test).to_numpy())


def test_a_million_id_vocabulary_saves_and_loads_quickly_with_a_small_manifest(tmp_path):
    rng = np.random.default_rng(0)
    rows = 1_000_000
    df = pd.DataFrame({"user": rng.permutation(10 * rows)[:rows], "item": rng.integers(0, 1000, rows),
                       "click": rng.integers(0, 2, rows)})
    schema = mtrec.Schema(sparse=["user", "item"], dense=[], tasks=["click"])
    model = mtrec.build_model("single", schema=schema, tasks=["click"],
                              overrides={"model.embedding.parts": [{"name": "sparse_features", "embedding_dim": 2}]})
    model.build_network(Vocabularies.fit(df, schema))
    start = time.perf_counter()
    path = mtrec.save(model, tmp_path / "big")
    saved_s = time.perf_counter() - start
    start = time.perf_counter()
    loaded = mtrec.load(path)
    loaded_s = time.perf_counter() - start
    assert (path / "manifest.json").stat().st_size < 64 * 1024
    assert len(loaded.vocabs.values["user"]) == rows
    assert np.array_equal(loaded.vocabs.encode("user", df["user"].to_numpy()[:1000]), np.arange(1, 1001))
    assert saved_s < 30 and loaded_s < 30, (saved_s, loaded_s)  # generous bounds for a loaded 2-core machine
