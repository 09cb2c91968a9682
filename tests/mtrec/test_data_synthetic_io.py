"""Synthetic data (deterministic, chunk-invariant, learnable) and read_frame for Parquet/CSV paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from mtrec.data import datasets
from mtrec.data.batches import encode_frame
from mtrec.data.datasets.synthetic import SyntheticSpec, synthetic_chunks, write_synthetic_parquet
from mtrec.data.io import read_frame
from mtrec.data.schema import Schema
from mtrec.data.vocab import Vocabularies
from mtrec.errors import DataError

SMALL = {"tables": 4, "cardinality": 500, "tasks": 2, "multi_valued": 1, "dense": 2, "block_rows": 1000}


def assert_frames_equal(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Equal frames, comparing list cells element-wise."""
    assert list(a.columns) == list(b.columns) and a.index.equals(b.index)
    for col in a.columns:
        if a[col].dtype == object:
            assert all(np.array_equal(x, y) for x, y in zip(a[col], b[col])), col
        else:
            assert np.array_equal(a[col].to_numpy(), b[col].to_numpy()), col


def test_synthetic_dataset_shape_and_determinism() -> None:
    d = datasets.load("synthetic", rows=3000, seed=7, **{k: v for k, v in SMALL.items() if k != "block_rows"})
    assert (len(d.train), len(d.valid), len(d.test)) == (2400, 300, 300)
    assert d.tasks == ["task0", "task1"] and d.new_tasks == ["task2"]
    assert d.schema.sparse == ["s0", "s1", "s2", "m0"] and d.schema.multi_valued == ["m0"]
    assert d.schema.dense == ["d0", "d1"]
    again = datasets.load("synthetic", rows=3000, seed=7, **{k: v for k, v in SMALL.items() if k != "block_rows"})
    assert_frames_equal(d.train, again.train)
    other = datasets.load("synthetic", rows=3000, seed=8, **{k: v for k, v in SMALL.items() if k != "block_rows"})
    assert not np.array_equal(d.train["s0"].to_numpy(), other.train["s0"].to_numpy())
    v = Vocabularies.fit(d.train, d.schema)
    enc = encode_frame(d.test, d.schema, v)
    assert enc.labels.shape == (300, 2)


def test_chunking_does_not_change_rows() -> None:
    whole = pd.concat(list(synthetic_chunks(2500, 2500, seed=1, **SMALL)))
    for chunk_rows in (333, 1000, 1700):
        parts = list(synthetic_chunks(2500, chunk_rows, seed=1, **SMALL))
        assert max(len(p) for p in parts) <= chunk_rows
        assert_frames_equal(pd.concat(parts), whole)
    tail = next(synthetic_chunks(100, 100, start=2400, seed=1, **SMALL))
    assert_frames_equal(tail, whole.iloc[2400:])


def test_ids_are_zipf_and_labels_learnable() -> None:
    spec = SyntheticSpec(seed=3, **SMALL)
    df = spec.frame(0, 20000)
    counts = df["s0"].value_counts()
    assert counts.iloc[0] > 20 * counts.iloc[50]
    assert df["m0"].map(len).between(1, spec.max_bag).all()
    logits = spec.logits(0, 20000)
    for t, name in enumerate([*spec.task_names, *spec.new_task_names]):
        assert 0.05 < df[name].mean() < 0.95
        assert roc_auc_score(df[name], logits[:, t]) > 0.75
    corr = np.corrcoef(logits.T)
    assert corr[np.triu_indices(len(corr), 1)].mean() > 0.2  # tasks share latent factors


def test_write_synthetic_parquet_streams_chunks(tmp_path: Path) -> None:
    path = write_synthetic_parquet(tmp_path / "syn.parquet", rows=2100, chunk_rows=700, seed=2, **SMALL)
    import pyarrow.parquet as pq

    assert pq.ParquetFile(path).metadata.num_row_groups == 3
    back = read_frame(path)
    expected = SyntheticSpec(seed=2, **SMALL).frame(0, 2100).reset_index(drop=True)
    assert_frames_equal(back, expected)
    assert Schema.from_frame(back, tasks=["task0", "task1", "task2"]).multi_valued == ["m0"]


def test_read_frame_parquet_csv_dir_glob(tmp_path: Path) -> None:
    df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"], "c": [0.5, 1.5, 2.5]})
    assert read_frame(df) is df
    df.to_parquet(tmp_path / "f.parquet")
    df.to_csv(tmp_path / "f.csv", index=False)
    pd.testing.assert_frame_equal(read_frame(tmp_path / "f.parquet"), df)
    pd.testing.assert_frame_equal(read_frame(str(tmp_path / "f.csv")), df)
    (tmp_path / "parts").mkdir()
    df.iloc[:2].to_parquet(tmp_path / "parts" / "p0.parquet")
    df.iloc[2:].to_parquet(tmp_path / "parts" / "p1.parquet")
    pd.testing.assert_frame_equal(read_frame(str(tmp_path / "parts" / "*.parquet")), df)
    assert len(read_frame(tmp_path / "parts")) == 3


def test_read_frame_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_frame(tmp_path / "missing.parquet")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="format"):
        read_frame(tmp_path / "notes.txt")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="cannot read parquet"):
        read_frame(tmp_path / "broken.parquet")
    with pytest.raises(DataError, match="no files match"):
        read_frame(str(tmp_path / "nothing*.parquet"))
    with pytest.raises(DataError, match="DataFrame"):
        read_frame(42)  # type: ignore[arg-type]
