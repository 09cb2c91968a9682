"""A user's own data: the default recipe derived from the schema and row count (documented rules, printed by
build_model), the logistic-regression baseline beside evaluate's AUCs, and add_task's linear probes."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mtrec
from mtrec.recipe import load_recipe, recipe_path
from mtrec.recipe_defaults import batch_size_for, default_recipe, embedding_width, epochs_for
from mtrec.tasks.probe import MARGIN, ProbeResult, WeakBackboneWarning, warn_if_weaker
from mtrec.train.linear import BelowBaselineWarning
from pretrain_stack.errors import ConfigError


def test_the_rules_give_the_documented_numbers():
    assert [embedding_width(n) for n in (2, 3, 4, 50, 1_000, 100_000, 10 ** 9)] == [8, 8, 12, 16, 36, 64, 64]
    assert all(embedding_width(n) % 4 == 0 for n in range(1, 5000, 7))
    assert [embedding_width(n, max_width=16) for n in (2, 50, 1_000, 10 ** 9)] == [8, 16, 16, 16]
    assert [batch_size_for(n) for n in (500, 20_000, 34_189, 80_000, 200_000, 2_000_000)] == \
        [256, 256, 256, 512, 1024, 4096]
    assert epochs_for(34_189, 256) == 16 and epochs_for(2_000_000, 4096) == 5 and epochs_for(500, 256) == 30
    assert epochs_for(10 ** 9, 4096) == 3


def user_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """A user's own frame: a 40-value and a 3,000-value id, a string column, a float, two labels."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"shop": rng.integers(0, 40, rows), "user": rng.integers(0, 3000, rows),
                       "device": rng.choice(["ios", "android", "web"], rows), "price": rng.random(rows)})
    logit = (df["shop"] % 4 == 0) * 2.0 - 1.0 + df["price"] + (df["device"] == "web")
    df["click"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    df["buy"] = (rng.random(rows) < 1 / (1 + np.exp(1.5 - logit))).astype(int)
    return df


def test_user_data_gets_a_recipe_sized_from_it_and_prints_it(capsys):
    df = user_frame(60_000)
    schema = mtrec.Schema.from_frame(df, tasks=["click", "buy"])
    model = mtrec.build_model("mptrec", schema=schema)
    printed = capsys.readouterr().out
    part = model.recipe.model["embedding"]["parts"][0]
    # shop: 40 values + OOV -> 4*ceil(1.5*41^0.25) = 16; user: 3,000 + 1 -> 4*ceil(11.1) = 48; device: 3 + 1 -> 12
    assert part["embedding_dims"] == {"shop": 16, "user": 48, "device": 12}
    t = model.recipe.train
    assert (t.batch_size, t.epochs, t.patience, t.weight_decay) == (256, 9, 3, 1e-5)
    assert model.recipe.model["encoder"]["dropout"] == 0.1
    assert "60,000 rows" in printed and "user 48" in printed and "batch 256" in printed
    again = mtrec.build_model("mptrec", schema=mtrec.Schema(schema.sparse, schema.dense, schema.tasks), data=df)
    assert again.recipe == model.recipe
    capsys.readouterr()


def test_a_shipped_dataset_keeps_its_recipe_and_no_other_dataset_falls_back_to_adult():
    assert recipe_path("mptrec", "adult").name == "mptrec_adult.yaml"
    assert recipe_path("mptrec", "movielens-100k").name == "mptrec_movielens.yaml"
    assert recipe_path("mptrec", "my_shop") is None and recipe_path("mptrec") is None
    with pytest.raises(ConfigError, match="dataset: no shipped mptrec recipe for 'my_shop'"):
        load_recipe("mptrec", dataset="my_shop")
    with pytest.raises(ConfigError, match="model: no recipe for 'nope'"):
        recipe_path("nope", "adult")


def test_every_model_builds_from_the_default_recipe():
    df = user_frame(3000)
    schema = mtrec.Schema.from_frame(df, tasks=["click", "buy"])
    for name in ("single", "shared_bottom", "mmoe", "ple", "stem", "mptrec"):
        recipe = default_recipe(name, schema, schema.profile, overrides={"train.epochs": 2})
        assert recipe.train.epochs == 2 and recipe.train.batch_size == 256
        parts = recipe.model["embedding"]["parts"]
        assert parts[0]["embedding_dim"] == 16  # the median width (stem's per-task tables take one width)
    capped = default_recipe("mptrec", schema, schema.profile, max_width=8).model["embedding"]["parts"][0]
    assert set(capped["embedding_dims"].values()) == {8} and capped["embedding_dim"] == 8
    with pytest.raises(ValueError, match="max_width: a multiple of 4"):
        default_recipe("mptrec", schema, schema.profile, max_width=10)


def test_the_default_recipe_beats_the_linear_baseline_where_features_interact(capsys):
    rng = np.random.default_rng(1)
    df = user_frame(12_000, seed=1)
    df["shop"] = rng.integers(0, 4, len(df))
    interaction = ((df["shop"] % 2 == 0) ^ (df["device"] == "web")).astype(float)  # no one-hot weight captures it
    df["click"] = (rng.random(len(df)) < 1 / (1 + np.exp(-(4 * interaction - 2 + df["price"])))).astype(int)
    train, valid, test = df.iloc[:8_000], df.iloc[8_000:10_000], df.iloc[10_000:]
    model = mtrec.build_model("mptrec", schema=mtrec.Schema.from_frame(train, tasks=["click", "buy"]))
    mtrec.train(model, train, valid=valid, epochs=4, seed=0, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", BelowBaselineWarning)
        metrics = mtrec.evaluate(model, test, baseline=train)
    assert metrics["click"]["baseline_auc"] < 0.65 and metrics["click"]["auc"] > metrics["click"]["baseline_auc"] + 0.1
    assert metrics["click"]["below_baseline"] is False
    capsys.readouterr()


def test_evaluate_flags_and_warns_when_a_model_is_below_the_baseline(adult):
    model = mtrec.build_model("mptrec", schema=adult.schema, tasks=adult.tasks, dataset="adult")
    mtrec.train(model, adult.train.iloc[:4096], epochs=1, max_steps=1, seed=0, progress=False)
    with pytest.warns(BelowBaselineWarning, match="income .* < 0.88"):
        metrics = mtrec.evaluate(model, adult.test, baseline=adult.train)
    assert metrics["income"]["below_baseline"] and metrics["income"]["baseline_auc"] > 0.885
    with pytest.warns(BelowBaselineWarning):
        folds = mtrec.evaluate(model, adult.test, baseline=True)  # out of fold on the test rows themselves
    assert 0.87 < folds["income"]["baseline_auc"] < metrics["income"]["baseline_auc"] + 0.01


def test_add_task_reports_both_probes_and_their_cost(trained_adult_mptrec, adult):
    model, _ = trained_adult_mptrec
    import copy

    clone = copy.deepcopy(model)
    result = mtrec.add_task(clone, "education", adult.train, valid=adult.valid, epochs=1, progress=False)
    assert result.probe_raw_auc > 0.8 and result.probe_frozen_auc > 0.75  # 0.8218 / 0.8241 on a full backbone
    assert 0 < result.details["probe_seconds"] < 60  # 0.28 CPU-s; generous for a loaded 2-core machine
    skipped = mtrec.add_task(copy.deepcopy(model), "education", adult.train, epochs=1, progress=False, probe=False)
    assert skipped.probe_raw_auc is None and "probe_seconds" not in skipped.details


def test_a_clearly_weaker_backbone_warns_naming_the_wider_methods():
    weak = ProbeResult(raw_auc=0.86, frozen_auc=0.86 - MARGIN - 0.001, rows=4096, seconds=0.1)
    with pytest.warns(WeakBackboneWarning, match="method='finetune', method='pecl'"):
        warn_if_weaker("education", "prompt", weak)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_weaker("education", "finetune", weak)  # the method already trains the backbone
        warn_if_weaker("education", "prompt", ProbeResult(0.86, 0.86 - MARGIN + 0.001, 4096, 0.1))


def test_ridge_probe_in_the_dual_equals_the_primal_solution():
    """More one-hot columns than rows (MovieLens: ~4,400 over 2,048) solves rows x rows: same scores as the primal."""
    import scipy.sparse as sp

    from mtrec.train.linear import ridge_scores

    rng = np.random.default_rng(0)
    x = sp.random(300, 900, density=0.02, random_state=1, format="csr")
    y = rng.integers(0, 2, 300)
    x_score = sp.random(80, 900, density=0.02, random_state=2, format="csr")
    centered = x.toarray() - x.toarray().mean(0)
    w = np.linalg.solve(centered.T @ centered + 10.0 * np.eye(900), centered.T @ (y - y.mean()))
    assert np.allclose(ridge_scores(x, y, x_score), x_score @ w, atol=1e-10)
    narrow = x[:, :100]  # fewer columns than rows: the primal path
    centered = narrow.toarray() - narrow.toarray().mean(0)
    w = np.linalg.solve(centered.T @ centered + 10.0 * np.eye(100), centered.T @ (y - y.mean()))
    assert np.allclose(ridge_scores(narrow, y, x_score[:, :100]), x_score[:, :100] @ w, atol=1e-10)
