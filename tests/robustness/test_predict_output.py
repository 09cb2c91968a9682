"""Case 5: `mtrec predict` never writes onto an input and replaces an existing output only with --overwrite."""

from __future__ import annotations

import pandas as pd
import pytest

import mtrec
from mtrec.cli import main as cli_main


@pytest.fixture(scope="module")
def checkpoint(small_model, tmp_path_factory):
    return mtrec.save(small_model, tmp_path_factory.mktemp("predict") / "model")


def _run(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as stopped:
        cli_main(argv)
    return stopped.value.code, capsys.readouterr().err


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_predict_never_writes_onto_its_input(checkpoint, adult, tmp_path, capsys, overwrite):
    rows = tmp_path / "x.parquet"
    adult.test.head(50).to_parquet(rows)
    before = rows.read_bytes()
    code, err = _run(["predict", "--checkpoint", str(checkpoint), "--input", str(rows), "--output", str(rows),
                      *overwrite], capsys)
    assert code == 2 and "would overwrite the input" in err and err.count("\n") == 1
    assert rows.read_bytes() == before


def test_predict_refuses_an_existing_output_unless_overwrite(checkpoint, adult, tmp_path, capsys):
    rows, out = tmp_path / "x.parquet", tmp_path / "scores.csv"
    adult.test.head(50).to_parquet(rows)
    out.write_text("keep me\n")
    code, err = _run(["predict", "--checkpoint", str(checkpoint), "--input", str(rows), "--output", str(out)],
                     capsys)
    assert code == 2 and "already exists" in err and out.read_text() == "keep me\n"
    cli_main(["predict", "--checkpoint", str(checkpoint), "--input", str(rows), "--output", str(out), "--overwrite"])
    assert len(pd.read_csv(out)) == 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv", "x.parquet"]


def test_batch_scoring_never_replaces_inputs_or_user_directories(checkpoint, adult, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    adult.test.head(50).to_parquet(inputs / "a.parquet")
    with pytest.raises(mtrec.OutputError, match="would overwrite the input"):
        mtrec.batch_predict(checkpoint, inputs, inputs, overwrite=True, progress=False)
    with pytest.raises(mtrec.OutputError, match="would overwrite the input"):
        mtrec.batch_predict(checkpoint, inputs / "a.parquet", tmp_path, overwrite=True, progress=False)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(mtrec.OutputError, match="not an mtrec output"):
        mtrec.batch_predict(checkpoint, inputs, tmp_path / "mine", overwrite=True, progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    assert (inputs / "a.parquet").is_file()
