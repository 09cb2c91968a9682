"""The command layer (mtrec.workflows): `mtrec` and jobs/* run the same workflow with the library's defaults."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import mtrec
from mtrec import workflows
from mtrec.batch.options import BAD_ROWS, BATCH_SIZE, ON_BAD_ROWS, PRECISION, PRECISIONS, WORKERS
from mtrec.errors import UsageError


@pytest.fixture(scope="module")
def files(adult, tmp_path_factory):
    """Small Adult train/valid/test Parquet files."""
    root = tmp_path_factory.mktemp("workflow_files")
    for name, frame in (("train", adult.train.head(6000)), ("valid", adult.valid.head(1500)),
                        ("test", adult.test.head(2000))):
        frame.to_parquet(root / f"{name}.parquet")
    return root


@pytest.fixture(scope="module")
def checkpoint(trained_adult_mptrec, tmp_path_factory):
    return mtrec.save(trained_adult_mptrec[0], tmp_path_factory.mktemp("workflow_ckpt") / "base")


def test_load_splits_of_a_dataset_and_of_files(adult, files):
    splits = workflows.load_splits("adult")
    assert splits.tasks == adult.tasks and splits.schema == adult.schema and len(splits.test) == len(adult.test)
    streamed = workflows.load_splits(train=str(files / "train.parquet"), test=str(files / "test.parquet"),
                                     tasks=["income"], stream=True)
    assert streamed.train == str(files / "train.parquet") and streamed.schema.tasks == ["income"]
    read = workflows.load_splits(train=str(files / "train.parquet"), valid=str(files / "valid.parquet"))
    assert isinstance(read.valid, pd.DataFrame) and len(read.valid) == 1500 and read.test is None
    assert read.schema is None  # no label columns named: enough to add a task, not to train
    with pytest.raises(UsageError, match="--dataset NAME, or --train PATH"):
        workflows.load_splits()
    with pytest.raises(UsageError, match="--tasks"):
        workflows.train_model("mptrec", read)


def test_cli_train_and_evaluate_report_the_same_metrics(files, tmp_path, capsys):
    from mtrec.cli import main

    out = tmp_path / "model"
    main(["train", "--model", "shared_bottom", "--train", str(files / "train.parquet"), "--valid",
          str(files / "valid.parquet"), "--test", str(files / "test.parquet"), "--tasks", "income,married",
          "--epochs", "1", "--seed", "0", "--out", str(out)])
    report = json.loads((out / "train_report.json").read_text())
    assert report["tasks"] == ["income", "married"] and report["best_epoch"] == 1
    assert report["data"]["train"]["rows"] == 6000 and report["test"]["income"]["rows"] == 2000
    assert report["test"]["income"]["auc"] > 0.75
    main(["evaluate", "--checkpoint", str(out), "--data", str(files / "test.parquet"), "--json",
          str(tmp_path / "m.json")])
    assert json.loads((tmp_path / "m.json").read_text()) == report["test"]
    assert "shared_bottom on " in capsys.readouterr().out


def test_cli_and_job_add_the_same_task(checkpoint, files, tmp_path):
    from jobs.add_task import main as job_main
    from mtrec.cli import main

    data = ["--train", str(files / "train.parquet"), "--valid", str(files / "valid.parquet"), "--test",
            str(files / "test.parquet")]
    main(["add-task", "--checkpoint", str(checkpoint), "--task", "education", *data, "--epochs", "1", "--seed",
          "0", "--out", str(tmp_path / "cli")])
    job = job_main(["--checkpoint", str(checkpoint), "--task", "education", *data, "--options",
                    '{"epochs": 1, "seed": 0}', "--out", str(tmp_path / "job")])
    cli = json.loads((tmp_path / "cli" / "add_task_report.json").read_text())
    assert job["test"] == cli["test"] and job["trainable_params"] == cli["trainable_params"]
    assert job["tasks"] == ["income", "married", "education"] and cli["test"]["education"]["rows"] == 2000
    rows = pd.read_parquet(files / "test.parquet").head(300)
    assert np.array_equal(mtrec.load(tmp_path / "cli").predict_array(rows),
                          mtrec.load(tmp_path / "job").predict_array(rows))


def test_cli_and_job_quantize_alike_and_refuse_a_quantized_checkpoint(checkpoint, files, tmp_path, capsys):
    from jobs.quantize import main as job_main
    from mtrec.cli import main

    main(["quantize", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "cli"), "--precision", "int8"])
    report = job_main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "job"), "--options",
                       '{"precision": "int8"}'])
    assert report["mode"] == "uniform int8"
    rows = pd.read_parquet(files / "test.parquet").head(300)
    assert np.array_equal(mtrec.load(tmp_path / "cli").predict_array(rows),
                          mtrec.load(tmp_path / "job").predict_array(rows))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["quantize", "--checkpoint", str(tmp_path / "cli"), "--out", str(tmp_path / "again"), "--precision",
              "int8"])
    assert exit_info.value.code == 2 and "already quantized" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        job_main(["--checkpoint", str(tmp_path / "cli"), "--out", str(tmp_path / "again")])
    assert exit_info.value.code == 2 and "already quantized" in capsys.readouterr().err


def test_parsers_take_defaults_and_choices_from_the_library():
    from jobs.predict import build_parser as job_parser
    from mtrec.cli import build_parser
    from mtrec.serve.runner import HOST, PORT

    job = job_parser().parse_args(["--checkpoint", "c", "--input", "i", "--output", "o"])
    assert (job.workers, job.batch_size, job.precision, job.on_bad_rows) == (WORKERS, BATCH_SIZE, PRECISION,
                                                                              ON_BAD_ROWS)
    choices = {a.dest: a.choices for a in job_parser()._actions if a.choices}
    assert choices == {"precision": PRECISIONS, "on_bad_rows": BAD_ROWS}
    serve = build_parser().parse_args(["serve", "--checkpoint", "c"])
    assert (serve.host, serve.port) == (HOST, PORT) == ("127.0.0.1", 8000)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["predict", "--checkpoint", "c", "--input", "i", "--output", "o", "--precision",
                                   "int2"])


def test_a_precision_applies_only_to_an_fp32_checkpoint(checkpoint, files, tmp_path, capsys):
    from mtrec.batch.scorer import load_for_scoring
    from mtrec.cli import main
    from mtrec.quant import QuantizationError, QuantizedModel, with_precision

    int8 = load_for_scoring(str(checkpoint), "int8")
    assert isinstance(int8, QuantizedModel) and with_precision(int8, "auto") is int8
    quantized = mtrec.save(int8, tmp_path / "int8")
    for precision in ("fp32", "int4"):
        with pytest.raises(QuantizationError, match="applies only to an fp32 checkpoint"):
            with_precision(int8, precision)
        with pytest.raises(QuantizationError, match="applies only to an fp32 checkpoint"):
            mtrec.batch_predict(quantized, files / "test.parquet", tmp_path / "scores", precision=precision,
                                progress=False)
    assert not (tmp_path / "scores").exists()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--checkpoint", str(quantized), "--input", str(files / "test.parquet"), "--output",
              str(tmp_path / "s.parquet"), "--precision", "fp16"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and "already quantized" in err
    assert not (tmp_path / "s.parquet").exists()
