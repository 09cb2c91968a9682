"""Cases 6 and 8: no silently untrained model, no silent one-class validation, no one-class new task, predict
ignores label columns, and a manifest that does not match its weights fails on load."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mtrec


def _fresh(adult, name="shared_bottom"):
    return mtrec.build_model(name, schema=adult.schema, tasks=adult.tasks, dataset="adult")


def test_fewer_rows_than_a_batch_still_trains(adult):
    model = _fresh(adult)
    rows = adult.train.iloc[:300]
    result = mtrec.train(model, rows, epochs=2, batch_size=2048, seed=0, progress=False)
    assert result.steps == 2 and result.examples == 600
    assert all(np.isfinite(r["loss"]) for r in result.history)


def test_fewer_rows_than_a_batch_in_files_fails_clearly(adult, tmp_path):
    adult.train.iloc[:300].to_parquet(tmp_path / "rows.parquet")
    model = _fresh(adult)
    with pytest.raises(mtrec.DataError, match="300 training rows.*batch of 2048"):
        mtrec.train(model, str(tmp_path / "rows.parquet"), epochs=1, batch_size=2048, progress=False)


def test_one_class_validation_warns_and_stops_on_loss(adult):
    model = _fresh(adult)
    valid = adult.valid.iloc[:400].copy()
    valid["income"] = 0
    with pytest.warns(UserWarning, match="income.*one class.*validation loss"):
        result = mtrec.train(model, adult.train.iloc[:4000], valid=valid, epochs=3, batch_size=512, seed=0,
                             progress=False, patience=1)
    scores = [r["valid_mean_auc"] for r in result.history]
    assert all(np.isfinite(s) and s < 0 for s in scores)  # minus the validation log loss
    assert all(r["early_stopping"] == "valid loss" for r in result.history)
    assert result.best_epoch == 1 + int(np.argmax(scores))


def test_add_task_refuses_one_class_labels(trained_adult_mptrec, adult):
    import copy

    model = copy.deepcopy(trained_adult_mptrec[0])
    train = adult.train.copy()
    train["education"] = 0
    with pytest.raises(mtrec.DataError, match="education.*only label 0"):
        mtrec.add_task(model, "education", train, epochs=1)
    assert model.tasks == trained_adult_mptrec[0].tasks


def test_predict_ignores_label_columns(small_model, adult):
    rows = adult.test.head(40).copy()
    expected = small_model.predict(rows.drop(columns=small_model.tasks)).to_numpy()
    rows[small_model.tasks] = np.nan
    assert np.array_equal(small_model.predict(rows).to_numpy(), expected)


def test_manifest_missing_a_feature_fails_on_load(small_model, tmp_path):
    path = mtrec.save(small_model, tmp_path / "ckpt")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["schema"]["sparse"] = manifest["schema"]["sparse"][1:]
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(mtrec.CheckpointError, match="schema"):
        mtrec.load(path)
