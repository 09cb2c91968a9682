"""benchmarks.sequences: the summary's gains over the pooled bag and the report section built from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.document import to_markdown
from benchmarks.sections import sequences
from benchmarks.sequences import VARIANTS, recipe_of, summarize


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
