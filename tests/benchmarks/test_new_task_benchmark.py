"""benchmarks/new_task.py's report: ratios to joint, the linear baseline beside the methods (a method below it
named), add_task's probes."""

from __future__ import annotations

from benchmarks.new_task import summarize
from benchmarks.sections import new_task
from benchmarks.document import to_markdown


def run(method: str, seed: int, auc: float, seconds: float, probe: bool) -> dict:
    return {"dataset": "adult", "backbone": "mptrec", "task": "education", "method": method, "seed": seed,
            "new_auc": auc, "old_auc": {"income": 0.89, "married": 0.86}, "old_identical": method != "joint",
            "trainable_share": 0.05, "trainable_params": 5, "total_params": 100, "seconds": seconds,
            "probe_raw_auc": 0.82 if probe else None, "probe_frozen_auc": 0.80 if probe else None}


def test_summary_flags_methods_below_the_baseline_and_reports_probes():
    runs = [run("prompt", s, 0.860 + 0.001 * s, 1.0, True) for s in (0, 1)]
    runs += [run("task_embedding", s, 0.870, 2.0, True) for s in (0, 1)]
    runs += [run("joint", s, 0.872, 20.0, False) for s in (0, 1)]
    summary, markdown = summarize(runs, [], ["adult"], {"adult": {"education": 0.8672}})
    entries = summary["adult"]
    assert entries["mptrec/prompt"]["below_baseline"] and not entries["mptrec/task_embedding"]["below_baseline"]
    assert entries["mptrec/prompt"]["joint_time_ratio"]["mean"] == 20.0
    assert abs(entries["mptrec/task_embedding"]["auc_minus_joint"]["mean"] + 0.002) < 1e-12
    assert "probe_raw_auc" not in entries["mptrec/joint"] and entries["mptrec/prompt"]["probe_frozen_auc"]["mean"] == 0.8
    assert "Below the linear baseline on education: mptrec/prompt (0.8605 < 0.8672)" in markdown
    assert "logistic regression (one-hot) | 0.8672" in markdown
    section = to_markdown(new_task({"summary": summary, "baselines": {"adult": {"education": 0.8672}}}))
    assert "below the logistic-regression baseline on the new task (0.8672" in section
    assert "mptrec/prompt (0.8605)" in section and "raw 0.8200 / frozen 0.8000" in section
