"""The benchmark report: building from a synthetic results dict, schema validation, compare, resumable suite."""

from __future__ import annotations

import argparse
import base64
import copy
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks import compare
from benchmarks.document import Cell, Table, to_markdown
from benchmarks.report import write_report
from benchmarks.schema import ResultsError, check, errors
from benchmarks.suite import Benchmark, SuiteError, run_suite


def test_report_writes_markdown_html_and_every_chart(synthetic_results, tmp_path):
    md, page = write_report(tmp_path, synthetic_results)
    charts = sorted(p.name for p in (tmp_path / "charts").glob("*.png"))
    assert charts == ["auc_by_model.png", "new_task.png", "precision.png", "scoring_vs_workers.png",
                      "throughput_vs_workers.png"]
    text = md.read_text()
    assert "## Headline: adult, per-task test AUC" in text
    assert "profile `quick`" in text
    assert "mtrec's best variant is at least 33.0x plain PyTorch with dense Adam" in text  # bigtable: 30.5k / 925
    assert "test AUC of the plain-PyTorch MPT-Rec after 10 epochs at the reference settings" in text
    assert "30.5x sooner in training time (2 of 2 seed(s)" in text
    assert re.search(r"\| 8192 bf16 \| 3\.30 \| 8\.0 \| \*\*130\.0\*\* \| \*\*40\*\* \|", text)  # the roofline row
    winner_rows = [line for line in text.splitlines() if line.startswith("| ") and "**" in line and "± " in line]
    assert winner_rows, "no table row has a bold winner with mean ± std"  # the fixed intro also contains ** and ±
    for chart in charts:
        assert f"](charts/{chart})" in text
    html = page.read_text()
    sources = re.findall(r'<img alt="[^"]*" src="([^"]+)"', html)
    assert len(sources) == len(charts)
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        image.verify()
        assert image.format == "PNG" and image.size[0] > 300
    assert "charts/" not in html and re.search(r"<td><strong>[^<]*±", html)


def test_winner_of_each_column_is_bold():
    table = Table(["model", "AUC", "seconds"], [["a", Cell("0.80", 0.80), Cell("3", 3.0)],
                                               ["b", Cell("0.90", 0.90), Cell("5", 5.0)]], [None, "high", "low"])
    lines = to_markdown([table]).splitlines()
    assert lines[2] == "| a | 0.80 | **3** |"
    assert lines[3] == "| b | **0.90** | 5 |"


def test_schema_accepts_results_and_names_each_violation(synthetic_results):
    check(synthetic_results)
    bad = copy.deepcopy(synthetic_results)
    del bad["benchmarks"]["multitask"]["config_hash"]
    bad["benchmarks"]["multitask"]["results"]["summary"]["adult"]["mptrec"]["income"]["mean"] = "high"
    bad["environment"].pop("git_commit")
    problems = errors(bad)
    assert any(p.startswith("benchmarks/multitask:") and "config_hash" in p for p in problems)
    assert any(p.startswith("benchmarks/multitask/results/summary/adult/mptrec/income/mean") for p in problems)
    assert any(p.startswith("environment:") and "git_commit" in p for p in problems)
    with pytest.raises(ResultsError, match="config_hash"):
        check(bad)


def test_compare_flags_an_injected_one_percent_auc_drop(synthetic_results, tmp_path, capsys):
    a = synthetic_results
    b = copy.deepcopy(a)
    assert compare.auc_drops(a, b) == []
    b["benchmarks"]["multitask"]["results"]["summary"]["adult"]["mptrec"]["income"]["mean"] *= 0.99
    b["benchmarks"]["throughput"]["results"]["results"][0]["samples"]["bf16"] = [25_000.0, 26_000.0]
    drops = compare.auc_drops(a, b)
    assert [d.key for d in drops] == ["multitask/adult/mptrec/income AUC"]
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    assert compare.main([str(tmp_path / "a.json"), str(tmp_path / "a.json")]) == 0
    assert compare.main([str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION multitask/adult/mptrec/income AUC" in out and "-1.00%" in out
    assert re.search(r"0\.50x  throughput/batch 256/bf16 ex/s: .* SLOWER", out)
    assert "1.00x  batch_predict/100000 rows/2 x fp32 rows/s" in out


def test_cli_report_compare_exits_1_on_a_drop(synthetic_results, tmp_path, capfd):
    from mtrec import bench_commands

    parser = argparse.ArgumentParser(prog="mtrec")
    bench_commands.add_parser(parser.add_subparsers(dest="command", required=True))
    b = copy.deepcopy(synthetic_results)
    b["benchmarks"]["new_task"]["results"]["summary"]["adult"]["mptrec/prompt"]["new_auc"]["mean"] *= 0.99
    (tmp_path / "a.json").write_text(json.dumps(synthetic_results))
    (tmp_path / "b.json").write_text(json.dumps(b))
    args = parser.parse_args(["report", "compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    with pytest.raises(SystemExit) as exc:
        args.func(args)
    assert exc.value.code == 1
    assert "AUC regression(s) beyond noise" in capfd.readouterr().out  # a crash would exit 1 too


def test_bench_outside_a_checkout_is_a_clear_error(tmp_path, monkeypatch):
    from mtrec import bench_commands

    monkeypatch.setattr(bench_commands, "__file__", str(tmp_path / "site-packages" / "mtrec" / "bench_commands.py"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="source checkout"):
        bench_commands.find_checkout()


FAKE_SCRIPT = '''"""A tiny benchmark script for the suite's tests: logs each call, fails while a flag file exists."""
import argparse
import json
import sys
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--seeds", nargs="+", type=int)
parser.add_argument("--log")
parser.add_argument("--out")
parser.add_argument("--env")
args = parser.parse_args()
name = Path(__file__).stem
with open(args.log, "a") as fh:
    fh.write(name + "\\n")
if Path(args.log + "." + name + ".fail").exists():
    sys.exit(3)
env = json.loads(args.env)
Path(args.out, name + ".json").write_text(json.dumps({"environment": env, "value": 1.5, "seeds": args.seeds}))
'''


def test_resumed_suite_runs_only_unfinished_benchmarks(synthetic_results, tmp_path, monkeypatch):
    (tmp_path / "fake_a.py").write_text(FAKE_SCRIPT)
    (tmp_path / "fake_b.py").write_text(FAKE_SCRIPT)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    log = tmp_path / "calls.log"
    env = json.dumps(synthetic_results["environment"])
    suite = [Benchmark(name, name, name, {"quick": ["--seeds", "0", "1", "--log", str(log), "--env", env], "full": []})
             for name in ("fake_a", "fake_b")]
    Path(f"{log}.fake_b.fail").touch()
    run_dir, results = run_suite("quick", tmp_path / "reports", benchmarks=suite)
    assert results["benchmarks"]["fake_a"]["status"] == "done"
    assert results["benchmarks"]["fake_b"]["status"] == "failed"
    assert results["benchmarks"]["fake_a"]["seeds"] == [0, 1]
    assert "Not finished" in (run_dir / "report.md").read_text()
    with pytest.raises(SuiteError, match="started with --profile quick"):
        run_suite("full", tmp_path / "reports", resume=run_dir, benchmarks=suite)
    Path(f"{log}.fake_b.fail").unlink()
    _, resumed = run_suite(None, tmp_path / "reports", resume=run_dir, benchmarks=suite)
    assert log.read_text().split() == ["fake_a", "fake_b", "fake_b"]
    assert {n: b["status"] for n, b in resumed["benchmarks"].items()} == {"fake_a": "done", "fake_b": "done"}
    assert resumed["suite"]["attempts"] == 2
    check(json.loads((run_dir / "results.json").read_text()))
    assert "| value | 1.5 |" in (run_dir / "report.md").read_text()
    argv = ["--seeds", "0", "1", "2", "--log", str(log), "--env", env]
    suite[0] = Benchmark("fake_a", "fake_a", "fake_a", {"quick": argv})
    _, changed = run_suite(None, tmp_path / "reports", resume=run_dir, benchmarks=suite)
    assert log.read_text().split() == ["fake_a", "fake_b", "fake_b", "fake_a"]
    assert changed["benchmarks"]["fake_a"]["seeds"] == [0, 1, 2]


CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
HARNESS = """<!DOCTYPE html><html><body><pre id="out">pending</pre>
<iframe src="report.html" style="width:1200px;height:800px" onload="const d = this.contentDocument;
document.getElementById('out').textContent = JSON.stringify([...d.images].map(i => [i.complete, i.naturalWidth]));">
</iframe></body></html>"""


def _chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                           "--virtual-time-budget=10000", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine")
def test_headless_chromium_shows_every_chart(synthetic_results, tmp_path):
    _, page = write_report(tmp_path, synthetic_results)
    (tmp_path / "harness.html").write_text(HARNESS)
    dom = _chromium("--dump-dom", (tmp_path / "harness.html").as_uri()).stdout
    loaded = json.loads(re.search(r'<pre id="out">(.*?)</pre>', dom).group(1))
    assert len(loaded) == 5 and all(done and width > 300 for done, width in loaded)
    shot = tmp_path / "page.png"
    _chromium(f"--screenshot={shot}", "--window-size=1200,9000", page.as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    blue = np.abs(pixels - [31, 119, 180]).sum(axis=1) < 30
    orange = np.abs(pixels - [255, 127, 14]).sum(axis=1) < 30
    assert blue.sum() > 2000 and orange.sum() > 500
