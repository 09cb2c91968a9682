"""Ranking metrics, a short end-to-end training run on a MovieLens slice, and the CLI's one-line config errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pretrain_stack import load_config
from pretrain_stack.metrics import build_eval_set, expected_hr_ndcg, popularity_scores, ranking_metrics
from pretrain_stack.pretrain import PretrainConfig, run

ROOT = Path(__file__).resolve().parents[2]
SASREC = ROOT / "pretrain_stack" / "configs" / "sasrec.yaml"


def test_expected_hr_ndcg_with_ties() -> None:
    hr, ndcg = expected_hr_ndcg(np.array([0, 9, 10, 8]), np.array([0, 0, 0, 3]), k=10)
    assert hr.tolist() == [1.0, 1.0, 0.0, 0.5]
    assert ndcg[0] == 1.0 and ndcg[1] == pytest.approx(1 / np.log2(11)) and ndcg[2] == 0.0
    assert ndcg[3] == pytest.approx((1 / np.log2(10) + 1 / np.log2(11)) / 4)


def test_eval_set_negatives_and_exclusions() -> None:
    user_items = [np.array([1, 2, 3]), np.array([4, 5])]
    eval_set = build_eval_set(user_items, np.array([3, 5]), num_items=10, vocab_size=13, num_negatives=5, seed=0)
    for seen, negs in zip(user_items, eval_set.negatives):
        assert len(set(negs.tolist())) == 5 and not set(negs.tolist()) & set(seen.tolist())
        assert all(1 <= n <= 10 for n in negs)
    assert eval_set.exclude[0].nonzero()[0].tolist() == [0, 1, 2, 11, 12]
    again = build_eval_set(user_items, np.array([3, 5]), num_items=10, vocab_size=13, num_negatives=5, seed=0)
    assert np.array_equal(again.negatives, eval_set.negatives)
    with pytest.raises(ValueError, match="cannot sample"):
        build_eval_set(user_items, np.array([3, 5]), num_items=10, vocab_size=13, num_negatives=8, seed=0)


def test_ranking_metrics_perfect_and_constant_scorers() -> None:
    user_items = [np.array([1, 2]), np.array([3, 4]), np.array([5, 6])]
    targets = np.array([2, 4, 6])
    eval_set = build_eval_set(user_items, targets, num_items=40, vocab_size=43, num_negatives=20, seed=1)
    perfect = np.zeros((3, 43))
    perfect[np.arange(3), targets] = 1.0
    assert set(ranking_metrics(perfect, eval_set).values()) == {1.0}
    constant = ranking_metrics(np.zeros((3, 43)), eval_set)
    assert constant["hr@10_sampled"] == pytest.approx(10 / 21)
    assert constant["hr@10_full"] == pytest.approx(10 / 39)  # 40 items minus the user's other item
    counts = popularity_scores([np.array([1, 1, 2])], 43)
    assert counts[1] == 2 and counts[2] == 1 and counts.sum() == 3


def test_short_run_lowers_loss_and_beats_popularity(tmp_path: Path) -> None:
    cfg = load_config(PretrainConfig, SASREC, ["--max_users", "200", "--epochs", "6", "--patience", "0",
                                               "--batch_size", "32", "--progress", "false",
                                               "--output-dir", str(tmp_path)])
    result = run(cfg)
    losses = [h["loss"] for h in result["history"]]
    assert losses[-1] < losses[0] - 0.3
    model, popularity = result["test"]["model"], result["test"]["popularity"]
    assert model["hr@10_sampled"] > popularity["hr@10_sampled"]
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["num_users"] == 200 and saved["config"]["train"]["epochs"] == 6
    assert set(saved["test"]["popularity"]) == {"hr@10_sampled", "ndcg@10_sampled", "hr@10_full", "ndcg@10_full"}
    assert "full" in saved["protocol"] and saved["wall_seconds"] > 0
    assert (tmp_path / "encoder" / "weights.pt").exists() and (tmp_path / "model.pt").exists()


def test_cli_unknown_key_is_one_line_naming_it() -> None:
    proc = subprocess.run([sys.executable, "-m", "pretrain_stack.pretrain", "--config", str(SASREC),
                           "--epochs", "1", "--bogus", "3"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "bogus" in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
