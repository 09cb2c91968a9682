"""The public API end to end on real data: train, evaluate, predict, save/load, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import mtrec


def test_train_reaches_auc_floor(adult, trained_adult_mptrec):
    model, result = trained_adult_mptrec
    metrics = mtrec.evaluate(model, adult.test)
    assert set(metrics) == {"income", "married"}
    assert metrics["income"]["auc"] > 0.86
    assert metrics["married"]["auc"] > 0.83
    assert result.steps > 0 and result.examples_per_second > 0
    assert len(result.history) >= 1 and "valid" in result.history[0]


def test_predict_columns_and_index(adult, trained_adult_mptrec):
    model, _ = trained_adult_mptrec
    features = adult.test.head(50).drop(columns=["income", "married", "education"])
    out = model.predict(features)
    assert list(out.columns) == ["income", "married"]
    assert out.index.equals(features.index)
    assert ((out.to_numpy() > 0) & (out.to_numpy() < 1)).all()


def test_save_load_bit_identical(adult, trained_adult_mptrec, tmp_path):
    model, _ = trained_adult_mptrec
    path = mtrec.save(model, tmp_path / "ckpt")
    again = mtrec.load(path)
    a = model.predict(adult.test).to_numpy()
    b = again.predict(adult.test).to_numpy()
    assert np.array_equal(a, b)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format_version"] == 1 and manifest["tasks"] == ["income", "married"]
    assert "torch" in manifest["versions"] and manifest["vocabularies"]


def test_truncated_checkpoint_is_a_clear_error(trained_adult_mptrec, tmp_path):
    model, _ = trained_adult_mptrec
    path = mtrec.save(model, tmp_path / "ckpt")
    weights = path / "weights.pt"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(mtrec.CheckpointError, match="weights.pt"):
        mtrec.load(path)


def test_corrupt_manifest_and_missing_dir(trained_adult_mptrec, tmp_path):
    model, _ = trained_adult_mptrec
    path = mtrec.save(model, tmp_path / "ckpt")
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(mtrec.CheckpointError, match="manifest.json"):
        mtrec.load(path)
    with pytest.raises(mtrec.CheckpointError, match="does not exist"):
        mtrec.load(tmp_path / "nowhere")


def test_save_is_atomic_over_existing(trained_adult_mptrec, tmp_path):
    model, _ = trained_adult_mptrec
    path = mtrec.save(model, tmp_path / "ckpt")
    mtrec.save(model, path, overwrite=True)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "ckpt"]
    assert leftovers == []


def test_untrained_model_says_so(adult):
    model = mtrec.build_model("shared_bottom", schema=adult.schema, tasks=adult.tasks, dataset="adult")
    with pytest.raises(mtrec.NotTrainedError):
        model.predict(adult.test.head(5))


def test_user_frame_from_schema_inference():
    rng = np.random.RandomState(0)
    n = 3000
    df = pd.DataFrame({
        "user": rng.randint(0, 50, n), "item": [f"i{v}" for v in rng.randint(0, 80, n)],
        "price": rng.rand(n).astype(np.float64),
    })
    logit = (df["user"] % 3 == 0).astype(float) * 2 - 1 + df["price"]
    df["click"] = (rng.rand(n) < 1 / (1 + np.exp(-logit))).astype(int)
    df["like"] = (rng.rand(n) < 1 / (1 + np.exp(logit))).astype(int)
    schema = mtrec.Schema.from_frame(df, tasks=["click", "like"])
    assert set(schema.sparse) == {"user", "item"} and schema.dense == ["price"]
    model = mtrec.build_model("mmoe", schema=schema)
    mtrec.train(model, df.iloc[:2500], valid=df.iloc[2500:], epochs=2, progress=False)
    metrics = mtrec.evaluate(model, df.iloc[2500:])
    assert metrics["click"]["auc"] > 0.6
