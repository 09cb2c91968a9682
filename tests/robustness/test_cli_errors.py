"""Case 11: every CLI user error is one line on stderr and exit code 2, never a traceback, and it comes before
any work (a bad --out or --json is refused before training or evaluating)."""

from __future__ import annotations

import json
import time

import pytest

import mtrec
from mtrec.cli import main as cli_main


@pytest.fixture(scope="module")
def checkpoints(small_model, adult, tmp_path_factory):
    """An fp32 and an int8 checkpoint, one whose manifest lost a feature, a rows file and a plain file."""
    from mtrec.quant import QuantizedModel
    from mtrec.quant.presets import preset_plan

    root = tmp_path_factory.mktemp("cli_errors")
    fp32 = mtrec.save(small_model, root / "fp32")
    int8 = mtrec.save(QuantizedModel.from_model(small_model, preset_plan(small_model, "int8")), root / "int8")
    broken = mtrec.save(small_model, root / "broken")
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["schema"]["sparse"] = manifest["schema"]["sparse"][1:]
    (broken / "manifest.json").write_text(json.dumps(manifest))
    adult.test.head(20).to_parquet(root / "rows.parquet")
    (root / "afile").write_text("not a directory")
    return {"fp32": str(fp32), "int8": str(int8), "broken": str(broken), "rows": str(root / "rows.parquet"),
            "root": str(root), "afile": str(root / "afile")}


CASES = {
    "evaluate unknown dataset": ["evaluate", "--checkpoint", "{fp32}", "--dataset", "nope"],
    "add-task on a quantized checkpoint": ["add-task", "--checkpoint", "{int8}", "--task", "education",
                                           "--dataset", "adult", "--out", "{root}/o1"],
    "add-task unknown method": ["add-task", "--checkpoint", "{fp32}", "--task", "education", "--dataset", "adult",
                                "--method", "magic", "--out", "{root}/o2"],
    "add-task unknown option": ["add-task", "--checkpoint", "{fp32}", "--task", "education", "--dataset", "adult",
                                "--option", "bogus=1", "--out", "{root}/o3"],
    "add-task zero epochs": ["add-task", "--checkpoint", "{fp32}", "--task", "education", "--dataset", "adult",
                             "--epochs", "0", "--out", "{root}/o4"],
    "add-task onto an existing checkpoint": ["add-task", "--checkpoint", "{fp32}", "--task", "education",
                                             "--dataset", "adult", "--out", "{fp32}"],
    "serve zero replicas": ["serve", "--checkpoint", "{fp32}", "--replicas", "0"],
    "predict unknown id column": ["predict", "--checkpoint", "{fp32}", "--input", "{rows}", "--output",
                                  "{root}/s.parquet", "--id-column", "nope"],
    "predict onto its input": ["predict", "--checkpoint", "{fp32}", "--input", "{rows}", "--output", "{rows}"],
    "evaluate json under a file": ["evaluate", "--checkpoint", "{fp32}", "--dataset", "adult", "--json",
                                   "{afile}/m.json"],
    "report validate a missing file": ["report", "validate", "{root}/missing.json"],
    "train out in /proc": ["train", "--dataset", "adult", "--model", "shared_bottom", "--out", "/proc/x"],
    "train out onto a user file": ["train", "--dataset", "adult", "--model", "shared_bottom", "--out", "{afile}"],
    "manifest lost a feature": ["evaluate", "--checkpoint", "{broken}", "--dataset", "adult"],
    "quantize out onto a checkpoint": ["quantize", "--checkpoint", "{fp32}", "--precision", "int8", "--out",
                                       "{int8}"],
}


@pytest.mark.parametrize("case", list(CASES))
def test_user_error_is_one_line_and_exit_2(case, checkpoints, capsys):
    argv = [arg.format(**checkpoints) for arg in CASES[case]]
    start = time.perf_counter()
    with pytest.raises(SystemExit) as stopped:
        cli_main(argv)
    err = capsys.readouterr().err
    assert stopped.value.code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert time.perf_counter() - start < 60  # refused before any training
