"""Offline batch scoring on Ray Data actors, on real adult rows: exact scores, bad rows (fail / skip) with the row
accounting, the CLI, and a job killed midway leaving nothing that looks complete."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mtrec
from mtrec.data.files import find_inputs, plan_inputs, split_pieces
from mtrec.batch.writer import RowLedger, ScoreWriter
from mtrec.cli import main as cli_main
from mtrec.quant.presets import with_precision

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checkpoint(trained_adult_mptrec, tmp_path_factory):
    return mtrec.save(trained_adult_mptrec[0], tmp_path_factory.mktemp("batch") / "model")


@pytest.fixture(scope="module")
def rows(adult):
    """400 test rows with a string id column, a clean index and bad rows at known places."""
    frame = adult.test.head(400).reset_index(drop=True)
    frame.insert(0, "uid", [f"u{i}" for i in range(len(frame))])
    return frame


@pytest.fixture(scope="module")
def ray_cluster():
    """One embedded loopback Ray for the module's runs (batch_predict reuses it); stopped at the end."""
    from mtrec.ray_session import ray_session

    with ray_session(num_cpus=3):
        yield


def test_plan_splits_row_groups_and_ledger_catches_gaps(rows, tmp_path):
    rows.to_parquet(tmp_path / "a.parquet", row_group_size=100)
    rows.head(10).to_csv(tmp_path / "b.csv", index=False)
    (tmp_path / "notes.txt").write_text("not data")
    assert find_inputs(tmp_path) == [str(tmp_path / "a.parquet"), str(tmp_path / "b.csv")]
    assert find_inputs(tmp_path / "b.*") == [str(tmp_path / "b.csv")]
    with pytest.raises(mtrec.DataError, match="cannot tell the format of .*notes.txt"):
        plan_inputs(tmp_path / "*.*t")
    files = plan_inputs(tmp_path)
    assert [f.rows for f in files] == [400, None] and files[0].row_groups == (100,) * 4
    pieces = split_pieces(files, rows_per_piece=250)
    assert [(p.file, p.row_groups, p.first_row, p.rows) for p in pieces] == \
        [(0, (0, 1), 0, 200), (0, (2, 3), 200, 200), (1, (), 0, None)]
    ledger = RowLedger(2)
    ledger.see(np.array([0, 0, 1]), np.array([0, 1, 0]))
    with pytest.raises(RuntimeError, match="jumped from row 2 to 3"):
        ledger.see(np.array([0]), np.array([3]))
    with pytest.raises(mtrec.DataError, match="no such file"):
        find_inputs(tmp_path / "missing.parquet")


def test_writer_abort_leaves_nothing(tmp_path):
    writer = ScoreWriter(tmp_path / "out", ["x.parquet"], ["income"], None, keep_rejected=True)
    assert writer.tmp.is_dir() and writer.tmp.name.startswith(".out.tmp-")
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_skip_scores_good_rows_and_rejects_bad_ones(checkpoint, trained_adult_mptrec, rows, tmp_path, ray_cluster,
                                                    capsys):
    data = rows.copy()
    data.loc[[7, 150], "age"] = -5
    (tmp_path / "in").mkdir()
    data.head(300).to_parquet(tmp_path / "in" / "a.parquet", row_group_size=120)
    csv = data.iloc[300:].reset_index(drop=True)
    csv.loc[3, "hours-per-week"] = -1
    csv.to_csv(tmp_path / "in" / "b.csv", index=False)
    result = mtrec.batch_predict(checkpoint, tmp_path / "in", tmp_path / "out", workers=2, batch_size=64,
                                 id_column="uid", on_bad_rows="skip")
    assert (result.rows, result.scored, result.rejected, result.files) == (400, 397, 3, 2)
    assert 1 <= len(result.workers) <= 2 and sum(w["rows"] for w in result.workers) == 400  # tiny: maybe 1 busy
    printed = capsys.readouterr().out
    assert "input rows 400 = scored 397 + rejected 3: ok" in printed

    rejected = pd.read_parquet(tmp_path / "out" / "rejected.parquet")
    assert rejected["file"].map(lambda p: Path(p).name).tolist() == ["a.parquet", "a.parquet", "b.csv"]
    assert rejected["row"].tolist() == [7, 150, 3] and rejected["uid"].tolist() == ["u7", "u150", "u303"]
    assert rejected["column"].tolist() == ["age", "age", "hours-per-week"]
    assert "row 150" in rejected["reason"][1] and "a.parquet" in rejected["reason"][1]

    scores = pd.read_parquet(tmp_path / "out" / "scores")
    good = ~rows["uid"].isin(rejected["uid"])
    assert scores["uid"].tolist() == rows.loc[good, "uid"].tolist()
    np.testing.assert_allclose(scores[["income", "married"]].to_numpy(),  # float rounding of other batch sizes
                               trained_adult_mptrec[0].predict_array(rows.loc[good]), rtol=0, atol=1e-6)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["rows"] == summary["scored"] + summary["rejected"] == 400
    assert not [p for p in tmp_path.iterdir() if ".out.tmp-" in p.name]


def test_cli_fails_at_the_first_bad_row_and_leaves_no_output(checkpoint, rows, tmp_path, ray_cluster, capsys):
    bad = rows.copy()
    bad.loc[[260, 390], "capital-gain"] = -3
    bad.to_parquet(tmp_path / "bad.parquet", row_group_size=150)
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["predict", "--checkpoint", str(checkpoint), "--input", str(tmp_path / "bad.parquet"),
                  "--output", str(tmp_path / "scores"), "--workers", "1", "--batch-size", "100"])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "bad.parquet" in message and "column 'capital-gain', row 260" in message
    assert [p.name for p in tmp_path.iterdir()] == ["bad.parquet"]


@pytest.mark.slow
def test_int8_scores_file_rows_close_to_in_process_int8(checkpoint, trained_adult_mptrec, rows, tmp_path,
                                                        ray_cluster):
    rows.to_parquet(tmp_path / "rows.parquet", row_group_size=150)
    cli_main(["predict", "--checkpoint", str(checkpoint), "--input", str(tmp_path / "rows.parquet"),
              "--output", str(tmp_path / "scores"), "--workers", "1", "--batch-size", "100", "--precision", "int8"])
    scores = pd.read_parquet(tmp_path / "scores" / "scores")
    assert scores["row"].tolist() == list(range(400)) and set(scores["file"]) == {str(tmp_path / "rows.parquet")}
    expected = with_precision(trained_adult_mptrec[0], "int8").predict_array(rows)
    diff = np.abs(scores[["income", "married"]].to_numpy() - expected)  # dynamic int8 scales depend on the batch
    assert diff.max() <= 0.05
    assert json.loads((tmp_path / "scores" / "summary.json").read_text())["precision"] == "int8"
    fp32 = trained_adult_mptrec[0].predict_array(rows)  # int8 is within 0.05 of fp32 too: the flag must take effect
    assert not np.allclose(scores[["income", "married"]].to_numpy(), fp32, atol=1e-6)
    assert not (tmp_path / "scores" / "rejected.parquet").exists()


def _processes_mentioning(text: str) -> list[int]:
    """Ids of live processes whose command line mentions `text` (Linux /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


@pytest.mark.slow
def test_killed_job_leaves_no_complete_looking_output(checkpoint, adult, tmp_path):
    frame = pd.concat([adult.test] * 20, ignore_index=True)
    frame.to_parquet(tmp_path / "big.parquet", row_group_size=20_000)
    out = tmp_path / "out"
    ray_tmp = tempfile.mkdtemp(prefix="mtk", dir="/tmp")  # short: Ray's socket paths live under it
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": ray_tmp}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen([sys.executable, "-m", "jobs.predict", "--checkpoint", str(checkpoint), "--input",
                             str(tmp_path / "big.parquet"), "--output", str(out), "--batch-size", "512"],
                            cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        seen = ""
        while proc.poll() is None and "k rows" not in seen[-400:]:
            seen += proc.stderr.read(64) if proc.stderr else ""
        assert proc.poll() is None, f"the job ended before it could be killed: {seen[-2000:]}"
        assert any(p.name.startswith(".out.tmp-") for p in tmp_path.iterdir())
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(1.0)
        for pid in _processes_mentioning(ray_tmp):  # Ray processes of the killed job outside its process group
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert not out.exists()
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp-")]
    assert len(leftovers) == 1 and not (leftovers[0] / "summary.json").exists()


def test_read_tasks_and_scorer_module_do_not_load_torch():
    """Ray Data read tasks import the datasource, the driver the scorer class: neither may pull in torch (each
    extra process with torch costs ~300 MiB), while the package's public names still resolve on first use."""
    code = ("import sys, mtrec.data.ray_source, mtrec.batch.scorer, mtrec.batch.writer\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "import mtrec\n"
            "assert callable(mtrec.train) and callable(mtrec.batch_predict) and mtrec.datasets.load\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


def test_unparsable_csv_in_a_read_task_is_a_plain_data_error(checkpoint, rows, tmp_path, ray_cluster):
    """A DataError raised inside a Ray Data read task reaches the caller as mtrec's own DataError (Ray wraps it in
    a class that is also a DataError but whose message is the remote traceback)."""
    path = tmp_path / "broken.csv"
    rows.head(20).to_csv(path, index=False)
    with path.open("a") as f:
        f.write('"an unterminated quote,1\n')  # pandas: EOF inside string
    with pytest.raises(mtrec.DataError) as exc:
        mtrec.batch_predict(checkpoint, path, tmp_path / "out", workers=1, progress=False)
    assert type(exc.value) is mtrec.DataError
    assert str(exc.value).startswith(f"file {str(path)!r}: cannot parse CSV") and "Traceback" not in str(exc.value)
    assert not (tmp_path / "out").exists()
