"""benchmarks/continual.py on a tiny synthetic sequence: its records, the report section and the chart."""

from __future__ import annotations

import json

import torch

from benchmarks import charts, continual, sections
from benchmarks.document import Table, to_markdown
from benchmarks.report import write_report
from benchmarks.schema import check
from benchmarks.suite import PROFILES, SCHEMA_VERSION


def test_tiny_sequence_records_every_addition_and_renders(tmp_path):
    threads = torch.get_num_threads()
    try:
        summary = continual.main(["--datasets", "synthetic", "--rows", "3000", "--seeds", "0", "--epochs", "1",
                                  "--methods", "prompt", "task_embedding", "cnf:fraction=0.05", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    res = json.loads((tmp_path / "continual.json").read_text())
    entry = summary["synthetic"]
    assert entry["tasks"] == ["task2", "task3", "task4"]
    assert set(entry["methods"]) == {"prompt", "task_embedding", "cnf:fraction=0.05"}
    for method, steps in entry["methods"].items():
        assert len(steps) == 3
        # frozen methods keep every older task bit-identical, cnf moves the backbone
        frozen = not method.startswith("cnf")
        assert all(s["old_identical"] == frozen for s in steps), method
        assert all(s["mean_change"]["mean"] == 0.0 for s in steps) or not frozen
        # after step k the model predicts the 2 pre-training tasks and k added ones
        assert [len(s["auc"]) for s in steps] == [3, 4, 5]
    cnf = [r for r in res["runs"] if r["method"] == "cnf:fraction=0.05"][0]["steps"]
    assert cnf[0]["trainable_share"] < 0.3  # the variant's option reached add_task
    assert cnf[1]["change"]["task2"] == cnf[1]["auc"]["task2"] - cnf[0]["auc"]["task2"]
    blocks = sections.continual(res)
    table = [b for b in blocks if isinstance(b, Table)][0]
    assert len(table.rows) == 9 and "new AUC" in to_markdown([table])
    fig = charts.continual(res)
    assert fig is not None and len(fig.axes) == 2
    environment = res.pop("environment")
    bench = {"status": "done", "module": "benchmarks.continual", "argv": [], "config_hash": "0123456789abcdef", "seeds": [0],
             "seconds": 1.0, "returncode": 0, "finished": "x", "load_average": [0.0, 0.0],
             "environment": environment, "results": res}
    results = {"schema_version": SCHEMA_VERSION,
               "suite": {"profile": "quick", "profile_description": PROFILES["quick"], "created": "x",
                         "finished": "x", "wall_seconds": 1.0, "attempts": 1},
               "environment": environment, "benchmarks": {"continual": bench}}
    check(results)
    (tmp_path / "report").mkdir()
    md, _ = write_report(tmp_path / "report", results)
    text = md.read_text()
    assert "](charts/continual.png)" in text and "synthetic: adding task2, task3, task4" in text
