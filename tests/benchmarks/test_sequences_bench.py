"""benchmarks.sequences: the summary's gains over the pooled bag and the report section built from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.document import to_markdown
from benchmarks.sections import sequences
from benchmarks.sequences import VARIANTS, merge, recipe_of, summarize


def test_summary_gains_over_the_bag_and_the_section_names_the_best(sequence_bench_runs) -> None:
    summary, markdown = summarize(sequence_bench_runs, ["bag", "scratch-last", "finetuned-last"])
    assert summary["finetuned-last"]["auc_gain_vs_bag"] == pytest.approx({"like": 0.02, "love": 0.02})
    assert summary["bag"]["tasks"]["like"]["auc"]["n"] == 2
    assert "| finetuned-last |" in markdown and "+0.0200 / +0.0200" in markdown
    text = to_markdown(sequences({"summary": summary}))
    assert "Best sequence variant finetuned-last: +0.0200 AUC" in text


def test_variants_cover_every_encoder_and_pooling() -> None:
    assert len(VARIANTS) == 10 and recipe_of("bag", Path("enc")) is None
    part = next(p for p in recipe_of("frozen-target_attention", Path("enc")).model["embedding"]["parts"]
                if p["name"] == "sequence")
    assert part["pooling"] == "target_attention" and part["pretrained"] == "enc" and part["freeze"] is True
    scratch = next(p for p in recipe_of("scratch-mean", Path("enc")).model["embedding"]["parts"]
                   if p["name"] == "sequence")
    assert scratch["pooling"] == "mean" and "pretrained" not in scratch


def test_chunks_merge_into_one_table_with_the_baseline_row(sequence_bench_runs, tmp_path) -> None:
    baseline = {"like": 0.715, "love": 0.70}
    chunks = [[r for r in sequence_bench_runs if r["seed"] == seed] for seed in (0, 1)]
    paths = []
    for i, runs in enumerate(chunks):
        paths.append(tmp_path / f"chunk{i}.json")
        paths[-1].write_text(json.dumps({"runs": runs, "epochs": None, "max_len": 50, "pretrain": {"encoder": "x"},
                                         "baseline": baseline if i == 1 else None}))
    summary = merge([str(p) for p in paths], str(tmp_path), "merged")
    whole, _ = summarize(sequence_bench_runs, ["bag", "scratch-last", "finetuned-last"])
    assert summary == whole and summary["bag"]["seeds"] == 2
    text = (tmp_path / "merged.md").read_text()
    assert "| logistic regression (bag features, one-hot) | 0.7150 | – | 0.7000 | – | +0.0045 / +0.0295 |" in text
    assert "Below the linear baseline: bag like; bag love; scratch-last love; finetuned-last love" in text
    assert json.loads((tmp_path / "merged.json").read_text())["baseline"] == baseline
    with pytest.raises(SystemExit, match="more than one file"):
        merge([str(paths[0]), str(paths[0])], str(tmp_path), "twice")
