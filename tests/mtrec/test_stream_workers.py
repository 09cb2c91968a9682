"""Workers reading a file stream: each rank's batches (pyarrow ranges, or its Ray Data split) are disjoint, the same
count on every rank, the same every time they are read, and a worker resumed at batch k gets exactly the batches
an uninterrupted one takes from k on; 2-worker runs (local processes and Ray Train) train on small files, and one
killed mid-epoch resumes to the very weights of a clean run."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

import mtrec
from mtrec.data.datasets.synthetic import make_spec, write_synthetic_dataset
from mtrec.data.stream import FileSource, StreamOptions
from mtrec.data.vocab import Vocabularies
from mtrec.distributed.feeds import Placement, RayDataFeed, StreamFeed

ROWS = 12_500  # 10,000 train rows in 2 files, row groups of 1,000 rows
BATCH = 256  # global; 128 per rank of 2


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stream_workers") / "data"
    write_synthetic_dataset(out, ROWS, files=2, row_group_rows=1000, progress=False)
    return out


def _model(files: Path) -> mtrec.MultiTaskModel:
    spec = make_spec()
    model = mtrec.build_model("mptrec", schema=spec.schema(), tasks=spec.task_names, dataset="adult")
    frame = FileSource.of(files / "train").head(ROWS)
    model.build_network(Vocabularies.fit(frame, model.schema), seed=0)
    return model


def _keys(batches) -> list[tuple[tuple[float, ...], ...]]:
    """Each batch as the tuple of its rows' dense values (distinct per row in synthetic data)."""
    return [tuple(map(tuple, b.dense.numpy().tolist())) for b in batches]


def test_stream_ranks_are_disjoint_equal_and_resume_exactly(files):
    model = _model(files)
    stream = FileSource.of(files / "train").scan(model.schema, model.tasks, StreamOptions(shuffle_buffer=1500,
                                                                                          read_rows=700))
    feeds = [StreamFeed(model, stream, Placement(BATCH, 2, rank, 3), shuffle=True) for rank in range(2)]
    steps = stream.steps(BATCH // 2, 2)
    assert steps == (10_000 // 2) // 128
    full = [_keys(f.batches(1, 0, steps)) for f in feeds]
    assert [len(k) for k in full] == [steps, steps]
    rows = [r for k in full for b in k for r in b]
    assert len(rows) == len(set(rows)) == 2 * steps * 128
    for rank, feed in enumerate(feeds):
        assert _keys(feed.batches(1, 7, steps)) == full[rank][7:]
        assert _keys(feed.batches(1, 3, 9)) == full[rank][3:9]
        assert _keys(feed.batches(2, 0, steps)) != full[rank]  # another epoch, another order


def _weights(model: mtrec.MultiTaskModel) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.require_network().state_dict().items()}


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["processes", "ray"])
def test_two_workers_train_on_files_and_a_killed_worker_resumes_exactly(files, tmp_path, launcher):
    settings = {"epochs": 2, "batch_size": BATCH, "seed": 0, "progress": False, "shuffle_buffer": 2048}
    common = {"sharding": "table_wise", "checkpoint_every": 5, "storage_path": str(tmp_path)}
    clean = _model(files)
    ra = mtrec.train(clean, str(files / "train"), valid=str(files / "valid"), workers=2, launcher=launcher,
                     distributed=common, **settings)
    model = _model(files)
    rb = mtrec.train(model, str(files / "train"), valid=str(files / "valid"), workers=2, launcher=launcher,
                     distributed={**common, "fail_once_at_step": 27, "max_failures": 1}, **settings)
    steps = (10_000 // 2) // 128
    assert (Path(rb.run_dir) / "failure_injected").exists()
    assert ra.steps == rb.steps == rb.planned_steps == 2 * steps
    assert rb.resumes == [25] and rb.ledger == [[1, 0, steps], [2, 0, steps]]
    assert rb.history[0]["rows"] == {"rows": 10_000, "trained": steps * BATCH, "rejected": 0,
                                     "unused": 10_000 - steps * BATCH}
    assert rb.data["train"]["good"] == 10_000
    a, b = _weights(clean), _weights(model)
    assert all(torch.equal(a[k], b[k]) for k in a), "the resumed run must end exactly where the clean run ends"
    for task, m in mtrec.evaluate(model, FileSource.of(files / "test").head(ROWS)).items():
        assert m["auc"] > 0.6, (task, m)


@pytest.fixture(scope="module")
def ray_local():
    """One embedded loopback Ray for the module's Ray Data tests; stopped at the end."""
    from mtrec.distributed.ray_train import ray_session

    with ray_session(num_cpus=2, dashboard=False):
        yield


@pytest.mark.slow
def test_ray_data_splits_are_disjoint_equal_repeatable_and_resume_exactly(files, ray_local):
    """Ray Train's ingest (streaming_split(2, equal=True), input order preserved) on a local loopback Ray."""
    from mtrec.data.ray_source import stream_dataset
    from mtrec.distributed.ray_train import ingest_config

    model = _model(files)
    stream = FileSource.of(files / "train").scan(model.schema, model.tasks, StreamOptions(read_rows=700))
    steps = stream.steps(BATCH // 2, 2)
    ds = stream_dataset(stream)
    ds.context.execution_options = ingest_config()._resolve_execution_options("train")
    splits = ds.streaming_split(2, equal=True)
    feeds = [RayDataFeed(model, s, Placement(BATCH, 2, rank, 3), stream.rows, shuffle_buffer=2000)
             for rank, s in enumerate(splits)]

    def epoch(e: int, start: int = 0) -> list[list[tuple[int, ...]]]:
        out: list[list[tuple[int, ...]]] = [[], []]
        threads = [threading.Thread(target=lambda r=r: out[r].extend(_keys(feeds[r].batches(e, start, steps))))
                   for r in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out

    first = epoch(1)
    again = epoch(1)
    resumed = epoch(1, start=5)
    second = epoch(2)
    assert [len(k) for k in first] == [steps, steps]
    rows = [r for k in first for b in k for r in b]
    assert len(rows) == len(set(rows)) == 2 * steps * 128
    assert again == first, "the split and the local shuffle must repeat for the same (seed, epoch, rank)"
    assert resumed == [k[5:] for k in first]
    again_rows = {r for k in second for b in k for r in b}
    assert second != first and len(again_rows - set(rows)) <= 2 * (5_000 - steps * 128)  # reshuffled, same split
    assert feeds[0].received[1] == feeds[1].received[1] == 5_000


@pytest.mark.slow
def test_a_ray_dataset_trains_in_process_as_its_files_do(files, ray_local):
    """The same rows in the same order: a ray.data.Dataset over the files gives the files' parameters."""
    import ray.data

    settings = {"epochs": 1, "batch_size": BATCH, "seed": 0, "shuffle": False, "progress": False, "compile": False}
    a, b = _model(files), _model(files)
    ra = mtrec.train(a, str(files / "train"), **settings)
    rb = mtrec.train(b, ray.data.read_parquet(sorted(str(p) for p in (files / "train").glob("*.parquet"))),
                     **settings)
    assert ra.steps == rb.steps == 10_000 // BATCH
    assert rb.history[-1]["rows"] == {"rows": 10_000, "trained": ra.steps * BATCH, "rejected": 0,
                                      "unused": 10_000 - ra.steps * BATCH}
    wa, wb = _weights(a), _weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
