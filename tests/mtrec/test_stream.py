"""Training on files read as a stream (mtrec.data.stream): the stream is the frame when the order is fixed, the
vocabulary fit of a stream is the frame's, bad rows fail or are skipped with exact counts, windows resume at any
batch exactly, ranks read disjoint equal ranges, CSV and Parquet read alike."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import mtrec
from mtrec.data.datasets.synthetic import make_spec, write_synthetic_dataset
from mtrec.data.stream import FileSource, StreamOptions
from mtrec.data.vocab import Vocabularies

ROWS = 30_000  # 24,000 train rows in 3 files, row groups of 3,000 rows


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stream") / "data"
    write_synthetic_dataset(out, ROWS, files=3, row_group_rows=3000, progress=False)
    return out


@pytest.fixture(scope="module")
def frame(files) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted((files / "train").glob("*.parquet"))], ignore_index=True)


def _model() -> mtrec.MultiTaskModel:
    spec = make_spec()
    return mtrec.build_model("mptrec", schema=spec.schema(), tasks=spec.task_names, dataset="adult")


def _weights(model: mtrec.MultiTaskModel) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.require_network().state_dict().items()}


def test_stream_equals_frame_when_the_order_is_fixed(files, frame):
    """Same vocabularies, rows in file order: the streamed run applies exactly the frame's batches."""
    base = _model()
    base.build_network(Vocabularies.fit(frame, base.schema), seed=0)
    a, b = copy.deepcopy(base), copy.deepcopy(base)
    settings = {"epochs": 2, "batch_size": 1024, "seed": 0, "shuffle": False, "progress": False, "compile": False}
    ra = mtrec.train(a, frame, **settings)
    rb = mtrec.train(b, str(files / "train"), read_rows=1000, **settings)
    assert ra.steps == rb.steps == 2 * (24_000 // 1024)
    wa, wb = _weights(a), _weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa), [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert rb.history[-1]["rows"] == {"rows": 24_000, "trained": 23 * 1024, "rejected": 0,
                                      "unused": 24_000 - 23 * 1024}


def test_streaming_vocabulary_fit_is_the_frame_fit(files, frame):
    model = _model()
    stream_model = copy.deepcopy(model)
    mtrec.train(stream_model, str(files / "train"), epochs=1, max_steps=1, progress=False, read_rows=777)
    reference = Vocabularies.fit(frame, model.schema)
    got = stream_model.vocabs
    assert got.order == reference.order
    for f in reference.order:
        assert np.array_equal(got.values[f], reference.values[f]), f
    for f, (mean, std) in reference.dense_stats.items():
        assert got.dense_stats[f] == pytest.approx((mean, std), rel=1e-12)


def test_windows_resume_at_any_batch_and_ranks_are_disjoint(files):
    model = _model()
    source = FileSource.of(files / "train")
    stream = source.scan(model.schema, model.tasks, StreamOptions(shuffle_buffer=2500, read_rows=1000))
    batch = 256

    def keys(world: int, rank: int, start: int) -> list[tuple[int, ...]]:
        out = []
        for frame, skip in stream.windows(batch, seed=3, epoch=2, rank=rank, world_size=world, start=start):
            ids = list(zip(frame["s0"].to_numpy(), frame["d0"].to_numpy()))
            out.extend(tuple(ids[i: i + batch]) for i in range(skip * batch, len(ids), batch))
        return out

    full = keys(1, 0, 0)
    assert len(full) == stream.steps(batch) == 24_000 // batch
    for start in (1, 9, 10, len(full) - 1):
        assert keys(1, 0, start) == full[start:], start
    assert keys(1, 0, 0) == full  # the same (seed, epoch) reads the same order
    r0, r1 = keys(2, 0, 0), keys(2, 1, 0)
    assert len(r0) == len(r1) == (24_000 // 2) // batch
    rows0 = {r for b in r0 for r in b}
    rows1 = {r for b in r1 for r in b}
    assert not rows0 & rows1 and len(rows0) == len(r0) * batch


def _with_bad_rows(files: Path, out: Path) -> list[tuple[str, int, str]]:
    """Copies of the train files with a bad label, a negative id and an infinite dense value; returns them."""
    out.mkdir()
    bad = []
    for k, path in enumerate(sorted((files / "train").glob("*.parquet"))):
        df = pd.read_parquet(path)
        if k == 1:
            df["task0"] = df["task0"].astype(float)
            df.loc[123, "task0"] = np.nan
            df.loc[4567, "s1"] = -5
            df.loc[7001, "d0"] = np.inf
            bad += [(str(out / path.name), 123, "task0"), (str(out / path.name), 4567, "s1"),
                    (str(out / path.name), 7001, "d0")]
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), out / path.name, row_group_size=3000)
    return bad


def test_a_bad_row_fails_before_any_step_naming_file_row_and_column(files, tmp_path):
    bad = _with_bad_rows(files, tmp_path / "bad")
    model = _model()
    with pytest.raises(mtrec.DataError) as exc:
        mtrec.train(model, str(tmp_path / "bad"), epochs=1, progress=False)
    message = str(exc.value)
    assert any(message.startswith(f"file {path!r}: column {column!r}, row {row}:") for path, row, column in bad), message
    assert not model.is_built


def test_skipped_rows_are_counted_and_written(files, tmp_path):
    bad = _with_bad_rows(files, tmp_path / "bad")
    model = _model()
    rejected = tmp_path / "run" / "rejected.parquet"
    result = mtrec.train(model, str(tmp_path / "bad"), epochs=2, batch_size=512, progress=False, on_bad_rows="skip",
                         rejected_path=str(rejected))
    assert result.data["train"] == {"rows": 24_000, "good": 24_000 - 3, "rejected": 3, "files": 3}
    table = pq.read_table(rejected).to_pandas()
    assert sorted(zip(table["file"], table["row"], table["column"])) == sorted(bad)
    for record in result.history:
        rows = record["rows"]
        assert rows["rows"] == rows["trained"] + rows["rejected"] + rows["unused"]
        assert rows["trained"] == (24_000 - 3) // 512 * 512 and rows["rejected"] == 3


def test_csv_and_parquet_files_train_alike(files, frame, tmp_path):
    csv = tmp_path / "train.csv"
    plain = frame.drop(columns=["m0"])
    plain.to_csv(csv, index=False)
    plain.to_parquet(tmp_path / "train.parquet", row_group_size=4000)
    schema = mtrec.Schema.from_frame(plain, tasks=["task0", "task1", "task2"])
    base = mtrec.build_model("mptrec", schema=schema, tasks=["task0", "task1", "task2"])
    a, b = copy.deepcopy(base), copy.deepcopy(base)
    settings = {"epochs": 1, "batch_size": 512, "seed": 0, "progress": False, "max_steps": 10, "shuffle": False}
    mtrec.train(a, str(csv), **settings)
    mtrec.train(b, str(tmp_path / "train.parquet"), **settings)
    assert all(np.array_equal(a.vocabs.values[f], b.vocabs.values[f]) for f in schema.sparse)
    wa, wb = _weights(a), _weights(b)  # CSV holds the float32 dense values as decimal text: equal to ~1e-7
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)


def test_arrow_flattened_lists_match_the_frame_path():
    """to_columns flattens list columns in Arrow; lengths, values, dtypes and errors match flatten_lists on the
    frame pyarrow's to_pandas gives (nulls: empty bags and NaN ids; strings; large lists; nested lists fail)."""
    from mtrec.data.schema import Schema
    from mtrec.data.stream import to_columns, to_frame
    from mtrec.data.validation import check_frame, flatten_lists
    from mtrec.errors import DataError

    columns = {"ints": pa.array([[1, 2], None, [], [3, None]]), "strs": pa.array([["a"], None, ["b", "c"], []]),
               "large": pa.array([[1], [2], [3, 4], [5]], type=pa.large_list(pa.int32())),
               "empty": pa.array([[], None, [], []], type=pa.list_(pa.int64()))}
    table = pa.table(columns)
    frame, flat = to_columns(table, list(columns))
    assert list(frame.columns) == [] and len(frame) == 4
    for name in columns:
        lengths, values = flatten_lists(to_frame(table)[name], name)
        assert np.array_equal(flat[name][0], lengths) and flat[name][0].dtype == np.int64, name
        assert values.dtype == flat[name][1].dtype and values.equals(flat[name][1]), name
    assert flat["ints"][0].tolist() == [2, 0, 0, 2] and np.isnan(flat["ints"][1].iloc[3])
    nested = pa.table({"m": pa.array([[[1]], [[2, 3]]]), "task0": pa.array([0, 1])})
    schema = Schema(sparse=["m"], dense=[], tasks=["task0"], multi_valued=["m"])
    arrow_frame, arrow_flat = to_columns(nested, ["m"])
    messages = []
    for df, given in ((arrow_frame, arrow_flat), (to_frame(nested), None)):
        with pytest.raises(DataError, match="column 'm', row 0: found a nested list") as e:
            check_frame(df, schema, ["task0"], require_labels=True, flat=given)
        messages.append(str(e.value))
    assert messages[0] == messages[1]
