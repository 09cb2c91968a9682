"""DataFrame -> KJT batches: key-major layout, jagged lengths, shuffling, take, prediction frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from mtrec.data.batches import Batch, encode_frame
from mtrec.models.inputs import network_inputs
from mtrec.data.schema import Schema
from mtrec.data.vocab import Vocabularies
from mtrec.errors import DataError

SCHEMA = Schema(sparse=["u", "tags", "i"], dense=["x", "y"], tasks=["t1", "t2"], multi_valued=["tags"])


def frame(n: int = 10) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "u": [f"u{k % 4}" for k in range(n)],
        "tags": [list(range(k % 3)) for k in range(n)],
        "i": np.arange(n) % 5,
        "x": rng.normal(size=n),
        "y": rng.normal(size=n),
        "t1": rng.integers(0, 2, n),
        "t2": rng.integers(0, 2, n).astype(bool),
    }, index=np.arange(100, 100 + n))


def expected_ids(df: pd.DataFrame, v: Vocabularies, rows: list[int]) -> dict[str, list[list[int]]]:
    sub = df.iloc[rows]
    return {"u": [[x] for x in v.encode("u", sub["u"]).tolist()],
            "tags": [v.encode("tags", np.array(c, dtype=np.int64)).tolist() for c in sub["tags"]],
            "i": [[x] for x in v.encode("i", sub["i"]).tolist()]}


def kjt_lists(batch: Batch) -> dict[str, list[list[int]]]:
    return {k: [t.tolist() for t in jt.to_dense()] for k, jt in batch.sparse.to_dict().items()}


def test_kjt_layout_and_lengths() -> None:
    df = frame()
    v = Vocabularies.fit(df, SCHEMA)
    enc = encode_frame(df, SCHEMA, v)
    assert len(enc) == 10
    b = next(enc.batches(4))
    kjt = b.sparse
    assert kjt.keys() == ["u", "tags", "i"]
    assert kjt.values().dtype == torch.int64
    assert kjt.lengths().tolist() == [1, 1, 1, 1, 0, 1, 2, 0, 1, 1, 1, 1]
    assert kjt.length_per_key() == [4, 3, 4]
    assert kjt_lists(b) == expected_ids(df, v, [0, 1, 2, 3])
    assert b.dense.shape == (4, 2) and b.dense.dtype == torch.float32
    assert b.labels.shape == (4, 2) and b.labels.dtype == torch.float32
    assert torch.equal(b.labels, torch.tensor(df[["t1", "t2"]].to_numpy(dtype=np.float32)[:4]))
    assert len(b) == 4 and set(network_inputs(b, labels=True, progress=0.5)) == {"sparse", "dense", "labels", "progress"}


def test_take_gathers_jagged_rows() -> None:
    df = frame()
    v = Vocabularies.fit(df, SCHEMA)
    enc = encode_frame(df, SCHEMA, v)
    rows = [8, 2, 5, 2]
    b = enc.take(np.array(rows))
    assert kjt_lists(b) == expected_ids(df, v, rows)
    assert torch.equal(b.labels, torch.tensor(df[["t1", "t2"]].to_numpy(dtype=np.float32)[rows]))
    assert list(enc.select(rows).index) == [108, 102, 105, 102]


def test_batches_cover_every_row_once_and_shuffle_is_seeded() -> None:
    df = frame(23)
    v = Vocabularies.fit(df, SCHEMA)
    enc = encode_frame(df, SCHEMA, v)
    sizes = [len(b) for b in enc.batches(5)]
    assert sizes == [5, 5, 5, 5, 3] and enc.num_batches(5) == 5
    assert [len(b) for b in enc.batches(5, drop_last=True)] == [5, 5, 5, 5] and enc.num_batches(5, True) == 4
    a = [b.dense for b in enc.batches(5, shuffle=True, seed=3)]
    again = [b.dense for b in enc.batches(5, shuffle=True, seed=3)]
    other = [b.dense for b in enc.batches(5, shuffle=True, seed=4)]
    assert all(torch.equal(x, y) for x, y in zip(a, again))
    assert not all(torch.equal(x, y) for x, y in zip(a, other))
    seen = torch.cat(a)[:, 0].sort().values
    assert torch.equal(seen, torch.cat([b.dense for b in enc.batches(5)])[:, 0].sort().values)


def test_prediction_frame_without_labels_and_no_dense() -> None:
    df = frame()
    schema = Schema(sparse=["u", "tags"], dense=[], tasks=["t1"], multi_valued=["tags"])
    v = Vocabularies.fit(df, schema)
    enc = encode_frame(df.drop(columns=["t1"]), schema, v, require_labels=False)
    b = next(enc.batches(3))
    assert b.labels is None and set(network_inputs(b)) == {"sparse", "dense"}
    with pytest.raises(ValueError, match="no labels"):
        network_inputs(b, labels=True)
    with pytest.raises(DataError, match="without labels"):
        enc.labels_array()
    assert b.dense.shape == (3, 0)
    with_labels = encode_frame(df, schema, v, require_labels=False)
    assert with_labels.labels is not None and with_labels.tasks == ["t1"]
    assert np.array_equal(with_labels.labels_array()[:, 0], df["t1"].to_numpy(dtype=np.float32))


def test_other_tasks_and_ebc_consumes_batch() -> None:
    from torchrec import EmbeddingBagCollection, EmbeddingBagConfig

    df = frame()
    v = Vocabularies.fit(df, SCHEMA)
    enc = encode_frame(df, SCHEMA, v, tasks=["t2"])
    assert enc.labels.shape == (10, 1)
    ebc = EmbeddingBagCollection(tables=[
        EmbeddingBagConfig(name=f"t_{s['name']}", embedding_dim=3, num_embeddings=s["num_embeddings"],
                           feature_names=[s["name"]]) for s in v.feature_specs()])
    out = ebc(enc.take([0, 4, 7]).sparse)
    assert out.values().shape == (3, 9)
    moved = next(enc.batches(2)).to("cpu")
    assert isinstance(moved, Batch) and len(moved) == 2


@pytest.mark.parametrize("rows", [[], [10]])
def test_take_bounds(rows: list[int]) -> None:
    df = frame()
    enc = encode_frame(df, SCHEMA, Vocabularies.fit(df, SCHEMA))
    if rows:
        with pytest.raises(IndexError):
            enc.take(rows)
    else:
        assert len(enc.take(np.array(rows, dtype=np.int64))) == 0
