"""Time to quality: both curves on Adult, the plain model's final test AUC as the target, the ratio of the times."""

from __future__ import annotations

import json

from benchmarks import time_to_quality


def test_time_to_quality_one_epoch_each(tmp_path):
    summary = time_to_quality.main(["--seeds", "0", "--plain-epochs", "1", "--mtrec-epochs", "1", "--compile", "off",
                                    "--out", str(tmp_path)])
    (run,) = json.loads((tmp_path / "time_to_quality.json").read_text())["runs"]
    assert run["target_auc"] == run["plain"][-1]["auc"]
    assert run["target_auc"]["income"] > 0.78 and run["target_auc"]["married"] > 0.75  # floors; seed 0: 0.814, 0.795
    assert run["plain_seconds"] == run["plain"][0]["seconds"] > 0
    assert [p["epoch"] for p in run["mtrec"]] == [1]
    if run["mtrec_seconds"] is not None:
        assert run["speedup"] == run["plain_seconds"] / run["mtrec_seconds"]
        assert summary["speedup"]["mean"] == run["speedup"]
    assert "plain s / mtrec s" in (tmp_path / "time_to_quality.md").read_text()
