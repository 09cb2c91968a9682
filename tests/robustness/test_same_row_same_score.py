"""Issue 13 case 9: a row's score does not depend on the rows it is scored with.

INT8 dense layers used dynamic quantization, whose activation scale came from the whole batch, so one row got a
different score in different company. Now int8 activations use static scales calibrated on calibration data (or,
without calibration data, one scale per row). Every row is scored alone and in 100 random batches (random sizes and
orders, duplicates included) and must come back bit-identical; so must batch scoring (slow: Ray Data). The endpoint
is checked in test_serve_hardening.py on the same kind of checkpoint. The final sigmoid is part of it: its CPU
kernel rounds its scalar tail differently from its vectorized body (mtrec.model.task_probabilities).
"""

from __future__ import annotations

import numpy as np
import pytest

import mtrec
from mtrec.quant import QuantizedModel, preset_plan, quantize

POOL = 1000
LABELS = ["income", "married", "education"]


@pytest.fixture(scope="module")
def model(trained_adult_mptrec):
    return trained_adult_mptrec[0]


@pytest.fixture(scope="module")
def pool(adult):
    return adult.test.head(POOL).drop(columns=LABELS).reset_index(drop=True)


@pytest.fixture(scope="module")
def variants(model, adult):
    return {"calibrated int8 (fully_quant)": quantize(model, adult.valid, mode="fully_quant", progress=False),
            "uncalibrated int8 (per-row scales)": QuantizedModel.from_model(model, preset_plan(model, "int8")),
            "fp16": QuantizedModel.from_model(model, preset_plan(model, "fp16"))}


@pytest.mark.parametrize("name", ["calibrated int8 (fully_quant)", "uncalibrated int8 (per-row scales)", "fp16"])
def test_rows_alone_and_in_100_random_batches_score_identically(variants, pool, name):
    q = variants[name]
    reference = q.predict_array(pool)
    for i in range(0, POOL, 37):
        alone = q.predict_array(pool.iloc[[i]])
        assert np.array_equal(alone[0], reference[i]), (name, i, alone[0], reference[i])
    rng = np.random.default_rng(13)
    for trial in range(100):
        idx = rng.choice(POOL, size=int(rng.integers(2, 600)), replace=bool(trial % 5 == 0))
        got = q.predict_array(pool.iloc[idx])
        assert np.array_equal(got, reference[idx]), (name, trial, int((got != reference[idx]).sum()),
                                                    float(np.abs(got - reference[idx]).max()))


def test_calibrated_int8_stays_within_the_auc_budget_and_survives_save_load(variants, model, adult, tmp_path):
    q = variants["calibrated int8 (fully_quant)"]
    fp32 = mtrec.evaluate(model, adult.test)
    int8 = mtrec.evaluate(q, adult.test)
    for task in model.tasks:
        assert fp32[task]["auc"] - int8[task]["auc"] < 0.003, (task, fp32, int8)
    again = mtrec.load(mtrec.save(q, tmp_path / "q"))
    rows = adult.test.head(500)
    assert np.array_equal(again.predict_array(rows), q.predict_array(rows))


@pytest.mark.slow
def test_batch_scoring_gives_the_in_process_bits(variants, pool, tmp_path):
    import pandas as pd

    from mtrec.distributed.ray_train import ray_session

    q = variants["calibrated int8 (fully_quant)"]
    checkpoint = mtrec.save(q, tmp_path / "q")
    rows = pool.head(300)
    source = tmp_path / "rows.parquet"
    rows.assign(uid=[f"u{i}" for i in range(len(rows))]).to_parquet(source)
    with ray_session(num_cpus=2, dashboard=False):
        result = mtrec.batch_predict(checkpoint, source, tmp_path / "out", workers=1, id_column="uid",
                                     progress=False)
    assert result.rows == len(rows)
    scores = pd.read_parquet(tmp_path / "out" / "scores")
    assert scores["uid"].tolist() == [f"u{i}" for i in range(len(rows))]
    assert np.array_equal(scores[q.tasks].to_numpy(), q.predict_array(rows))
