"""Quantized models on adult mptrec: closeness to fp32 per precision, save/load round trips, the automatic plan's
budget on a held-out test set, modes, added tasks, and the CLI.

Tolerances (probabilities in [0, 1], adult test set, model trained 2 epochs): fp32 through FBGEMM tables
<= 1e-6 (same arithmetic); fp16 <= 5e-3 max; int8 <= 0.05 max and 0.005 mean; int4 tables + int8 dense <= 0.1
max and 0.01 mean; every preset's per-task AUC within 0.002 of fp32.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

import mtrec
from mtrec.cli import main as cli_main
from mtrec.quant import QuantizationError, QuantizedModel, find_units, preset_plan, quantize
from mtrec.checkpoint import WEIGHTS

TOLERANCE = {"fp32": (1e-6, 1e-6), "fp16": (5e-3, 5e-4), "int8": (0.05, 0.005), "int4": (0.1, 0.01)}


@pytest.fixture(scope="module")
def model(trained_adult_mptrec):
    return trained_adult_mptrec[0]


@pytest.fixture(scope="module")
def fp32_probs(model, adult):
    return model.predict_array(adult.test)


@pytest.fixture(scope="module")
def auto(model, adult):
    """The automatic plan for size, calibrated on the validation split (its choices do not depend on timings,
    which a shared test machine makes noisy; the latency objective is checked separately)."""
    return quantize(model, adult.valid, max_auc_drop=0.001, objective="size", repeats=1, progress=False)


def _aucs(model, df):
    return {t: m["auc"] for t, m in mtrec.evaluate(model, df).items()}


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8", "int4"])
def test_preset_predictions_close_to_fp32(model, adult, fp32_probs, precision):
    q = QuantizedModel.from_model(model, preset_plan(model, precision))
    probs = q.predict_array(adult.test)
    diff = np.abs(probs - fp32_probs)
    max_tol, mean_tol = TOLERANCE[precision]
    assert diff.max() <= max_tol and diff.mean() <= mean_tol, (precision, diff.max(), diff.mean())
    base, quant = _aucs(model, adult.test), _aucs(q, adult.test)
    assert all(abs(base[t] - quant[t]) <= 0.002 for t in model.tasks)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8", "int4", "auto"])
def test_each_precision_roundtrips_save_load(model, adult, auto, tmp_path, precision):
    q = auto if precision == "auto" else QuantizedModel.from_model(model, preset_plan(model, precision))
    path = mtrec.save(q, tmp_path / precision)
    loaded = mtrec.load(path)
    assert isinstance(loaded, QuantizedModel)
    assert loaded.plan == q.plan and loaded.tasks == q.tasks and loaded.nbytes == q.nbytes
    frame = adult.test.head(700)
    assert np.array_equal(loaded.predict_array(frame), q.predict_array(frame))
    assert json.loads((path / "manifest.json").read_text())["kind"] == "quantized"
    state = torch.load(path / WEIGHTS, weights_only=True)
    assert set(state) == {"network", "tables"}
    if precision != "fp32":
        assert (path / WEIGHTS).stat().st_size < 0.6 * q.report.get("fp32_bytes", 643_600)


def test_auto_plan_respects_budget_on_test_set(model, adult, auto):
    base, quant = _aucs(model, adult.test), _aucs(auto, adult.test)
    drops = {t: base[t] - quant[t] for t in model.tasks}
    assert max(drops.values()) <= 0.001, drops
    report = auto.report
    assert report["within_budget"] and max(report["auc_drop"].values()) <= 0.001
    assert report["bytes_ratio"] <= 0.35 and report["bytes"] == auto.nbytes
    assert set(auto.plan) == {u.name for u in find_units(model.network)}
    assert {"int8"} <= set(auto.plan.values())
    assert report["units"] and all("candidates" in u for u in report["units"])
    assert all(set(c) >= {"precision", "auc_drop", "bytes_saved", "seconds_saved"}
               for u in report["units"] for c in u["candidates"])


def test_latency_plan_respects_budget_on_test_set(model, adult):
    q = quantize(model, adult.valid, max_auc_drop=0.001, repeats=3, progress=False)
    base, quant = _aucs(model, adult.test), _aucs(q, adult.test)
    assert max(base[t] - quant[t] for t in model.tasks) <= 0.001
    assert q.report["objective"] == "latency" and "int8" in set(q.plan.values())
    assert all(c["seconds_saved"] is not None for u in q.report["units"] for c in u["candidates"])


def test_zero_budget_keeps_every_prediction_changing_unit_fp32(model, adult):
    q = quantize(model, adult.valid, max_auc_drop=0.0, objective="size", repeats=1, progress=False)
    assert max(q.report["auc_drop"].values()) <= 0.0
    assert q.plan["encoder.classifier.0"] == "int8"  # training-only head: quantizing it changes no prediction


def test_modes_and_errors(model, adult):
    full = quantize(model, mode="fully_quant")
    assert set(full.plan.values()) == {"int8"}
    dense = quantize(model, adult.valid, mode="dense_only", progress=False)
    units = find_units(model.network)
    assert all(dense.plan[u.name] == ("fp32" if u.kind == "table" else "int8") for u in units)
    assert "auc_drop" in dense.report
    with pytest.raises(QuantizationError, match="needs calibration"):
        quantize(model)
    with pytest.raises(QuantizationError, match="objective"):
        quantize(model, adult.valid, objective="speed")
    with pytest.raises(QuantizationError, match="max_auc_drop"):
        quantize(model, adult.valid, max_auc_drop=-1)
    with pytest.raises(QuantizationError, match="unknown unit"):
        QuantizedModel.from_model(model, {"encoder.nope": "int8"})
    with pytest.raises(mtrec.DataError, match="single class"):
        quantize(model, adult.valid.assign(income=0), progress=False)


def test_quantizes_heads_of_added_tasks(trained_adult_mptrec, adult, tmp_path):
    model = copy.deepcopy(trained_adult_mptrec[0])
    mtrec.add_task(model, "education", adult.train.head(4000), valid=adult.valid.head(1000), epochs=1,
                   progress=False)
    q = quantize(model, mode="fully_quant")
    head_units = [name for name in q.plan if name.startswith("task_heads.")]
    assert head_units and all(q.plan[name] == "int8" for name in head_units)
    frame = adult.test.head(500)
    diff = np.abs(q.predict_array(frame) - model.predict_array(frame))
    assert diff.shape[1] == 3 and diff.max() <= 0.05
    loaded = mtrec.load(mtrec.save(q, tmp_path / "q"))
    assert loaded.tasks == model.tasks and np.array_equal(loaded.predict_array(frame), q.predict_array(frame))


def test_cli_quantize_and_predict_with_precision(model, adult, tmp_path):
    mtrec.save(model, tmp_path / "fp32")
    cli_main(["quantize", "--checkpoint", str(tmp_path / "fp32"), "--out", str(tmp_path / "q"),
              "--precision", "int4"])
    assert mtrec.load(tmp_path / "q").plan == preset_plan(model, "int4")
    frame = tmp_path / "rows.parquet"
    adult.test.head(50).to_parquet(frame)
    for checkpoint, extra in ((tmp_path / "fp32", ["--precision", "int8"]), (tmp_path / "q", [])):
        out = tmp_path / f"{checkpoint.name}.csv"
        cli_main(["predict", "--checkpoint", str(checkpoint), "--input", str(frame), "--output", str(out), *extra])
        assert out.read_text().splitlines()[0] == "income,married"


def test_latency_ranking_prefers_fewer_bytes_within_timing_noise():
    from mtrec.quant.planner import Candidate, _ranked

    def cand(precision, saved_bytes, saved_s):
        return Candidate("u", precision, {"t": 0.0}, 0.0, saved_bytes, saved_s, fp32_seconds=1e-3,
                         network_seconds=3e-3)

    # noise = 5% of 1 ms + 2% of 3 ms = 110 us
    int8, fp16 = cand("int8", 700, 300e-6), cand("fp16", 500, 380e-6)
    assert [c.precision for c in _ranked([fp16, int8], "latency")] == ["int8", "fp16"]
    fast16 = cand("fp16", 500, 500e-6)
    assert [c.precision for c in _ranked([int8, fast16], "latency")] == ["fp16", "int8"]
    assert [c.precision for c in _ranked([fp16, int8], "size")] == ["int8", "fp16"]
