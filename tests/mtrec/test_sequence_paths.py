"""A model with a sequence feature on every path: added task (old tasks bit-identical, encoder frozen), quantized
(encoder linears are plan units), the fp32 Predictor and a served request carrying the history list, batch scoring."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

import mtrec
from mtrec.data.schema import Schema
from mtrec.models.sequence import SequenceEmbedding
from mtrec.quant import QuantizedModel

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def seq_model():
    from test_sequences import seq_recipe, toy_frame

    df = toy_frame(2000, seed=3)
    df["third"] = ((df["item"] % 3 == 0) & (df["click"] == 1)).astype(np.int64)
    schema = Schema.from_frame(df, tasks=["click", "buy"], sparse=["user", "item"], user="user",
                               sequences={"hist": {"max_len": 6, "shared_with": "item", "actions": "acts"}})
    model = mtrec.build_model("mptrec", schema=schema, recipe=seq_recipe("mptrec", "target_attention"))
    mtrec.train(model, df.iloc[:1400], epochs=2, batch_size=64, seed=0, progress=False, compile=False)
    return model, df.iloc[:1400], df.iloc[1400:1700], df.iloc[1700:]


def test_added_task_keeps_old_predictions_and_the_encoder_frozen(seq_model) -> None:
    base, train, valid, test = seq_model
    model = copy.deepcopy(base)
    before = model.predict(test).to_numpy()
    part = next(m for m in model.network.modules() if isinstance(m, SequenceEmbedding))
    state = {k: v.clone() for k, v in part.state_dict().items()}
    res = mtrec.add_task(model, "third", train, valid=valid, epochs=1, progress=False)
    after = model.predict(test)
    assert np.array_equal(after[["click", "buy"]].to_numpy(), before)
    assert all(np.array_equal(v.numpy(), part.state_dict()[k].numpy()) for k, v in state.items())
    assert res.trainable_params < 0.2 * res.total_params and after["third"].between(0, 1).all()


def test_quantized_plan_covers_the_encoder_linears(seq_model) -> None:
    model, _, valid, test = seq_model
    q = mtrec.quantize(model, calibration=valid, max_auc_drop=0.01)
    encoder_units = [u for u in q.plan if ".encoder.layers." in u or ".attention." in u]
    assert encoder_units, sorted(q.plan)
    probs = q.predict(test)
    assert probs.shape == (len(test), 2) and np.isfinite(probs.to_numpy()).all()
    fp32 = QuantizedModel.from_model(model, {}).predict(test).to_numpy()
    assert np.array_equal(fp32, model.predict(test).to_numpy())


def test_a_request_carries_the_history_list(seq_model, tmp_path) -> None:
    model, _, _, test = seq_model
    path = mtrec.save(model, tmp_path / "m")
    rows = json.loads(test.drop(columns=["click", "buy", "third"]).head(20).to_json(orient="records"))
    assert isinstance(rows[0]["hist"], list)
    predictor = QuantizedModel.from_model(mtrec.load(path), {}).predictor  # what the Serve deployment calls
    scored = predictor.predict_rows(rows)
    expected = model.predict(test.head(20))
    for task in ("click", "buy"):
        assert np.array_equal(np.float32(scored[task]), expected[task].to_numpy())


@pytest.mark.slow
def test_batch_scoring_reads_sequences_from_files(seq_model, tmp_path) -> None:
    from mtrec.ray_session import ray_session

    model, _, _, test = seq_model
    path = mtrec.save(model, tmp_path / "m")
    source = tmp_path / "rows.parquet"
    test.drop(columns=["click", "buy", "third"]).reset_index(drop=True).to_parquet(source)
    with ray_session(num_cpus=2, dashboard=False):
        result = mtrec.batch_predict(path, source, tmp_path / "out", workers=1, progress=False)
    assert result.rows == result.scored == len(test)
    import pandas as pd

    scores = pd.read_parquet(tmp_path / "out" / "scores")
    assert np.array_equal(scores[["click", "buy"]].to_numpy(), model.predict(test).to_numpy())
