"""Sharpness-aware pre-training (train(..., flatness=...)) and C&F task addition (add_task(method="cnf"))."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import mtrec
from mtrec.recipe import FlatnessConfig
from mtrec.train.flatness import perturbation
from pretrain_stack.errors import ConfigError

STEPS = {"epochs": 1, "max_steps": 12, "progress": False}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small(adult):
    """8000 training rows of adult, 2000 validation and 3000 test rows."""
    return adult.train.head(8000), adult.valid.head(2000), adult.test.head(3000)


def fresh(adult) -> mtrec.MultiTaskModel:
    return mtrec.build_model("mptrec", schema=adult.schema, tasks=adult.tasks, dataset="adult",
                             overrides={"train.batch_size": 512})


def test_perturbation_has_radius_rho():
    w = [torch.tensor([1.0, -2.0]), torch.tensor([[0.5]])]
    g = [torch.tensor([3.0, 4.0]), None]
    e = perturbation(w, g, FlatnessConfig(rho=0.1, adaptive=False))
    assert torch.allclose(torch.cat([x.reshape(-1) for x in e]).norm(), torch.tensor(0.1))
    assert torch.equal(e[1], torch.zeros(1, 1))
    a = perturbation(w, g, FlatnessConfig(rho=0.1, adaptive=True, eta=0.0))
    # ASAM: ||e / T|| = rho with T = |w|
    assert torch.allclose(torch.cat([(a[0] / w[0].abs())]).norm(), torch.tensor(0.1))


def test_negligible_radius_reproduces_plain_training(adult, small):
    """Two passes, tables updated once: with rho -> 0 the sharpness-aware run is the plain run."""
    train, valid, test = small
    plain, flat = fresh(adult), fresh(adult)
    mtrec.train(plain, train, valid=valid, seed=0, **STEPS)
    result = mtrec.train(flat, train, valid=valid, seed=0, flatness={"rho": 1e-30, "adaptive": False}, **STEPS)
    assert result.execution["flatness"]["sharpness_aware_steps"] == 12
    assert np.allclose(flat.predict(test).to_numpy(), plain.predict(test).to_numpy(), atol=1e-6)


def test_flatness_statistics_are_recorded_and_saved(adult, small, tmp_path):
    train, valid, test = small
    model = fresh(adult)
    result = mtrec.train(model, train, valid=valid, seed=0, flatness={"rho": 0.05, "every": 2}, **STEPS)
    assert result.execution["flatness"]["sharpness_aware_steps"] == 6 and result.execution["compile"] is False
    stats = model.flatness
    names = {n for n, _ in model.network.named_parameters()}
    assert stats and set(stats) <= names and not any("embedding_bags" in n for n in stats)
    assert all((s >= 0).all() for s in stats.values()) and sum(s.sum() for s in stats.values()) > 0
    loaded = mtrec.load(mtrec.save(model, tmp_path / "flat"))
    assert set(loaded.flatness) == set(stats)
    assert all(torch.equal(loaded.flatness[n], stats[n]) for n in stats)
    assert np.array_equal(loaded.predict(test).to_numpy(), model.predict(test).to_numpy())


@pytest.mark.parametrize("flatness, key", [({"rho": -1}, "train.flatness.rho"), ({"radius": 1}, "train.flatness.radius"),
                                           ({"every": 0}, "train.flatness.every"), ("big", "train.flatness")])
def test_bad_flatness_settings_name_the_key(adult, small, flatness, key):
    with pytest.raises(ConfigError) as exc:
        mtrec.train(fresh(adult), small[0], flatness=flatness, **STEPS)
    assert exc.value.key == key


def test_cnf_forgets_less_than_finetune_and_keeps_flatness_for_the_next(trained_adult_mptrec, small, tmp_path):
    train, valid, test = small
    base = trained_adult_mptrec[0]
    old = base.predict(test).to_numpy()
    moved = {}
    for method in ("finetune", "cnf"):
        model = copy.deepcopy(base)
        result = mtrec.add_task(model, "education", train, valid=valid, method=method, epochs=2, progress=False)
        moved[method] = float(np.abs(model.predict(test).to_numpy()[:, :2] - old).max())
    assert result.details["importance_elements"]["probed"] > 0  # base was trained without flatness: probed
    assert 0 < moved["cnf"] < moved["finetune"], moved
    few = mtrec.add_task(copy.deepcopy(base), "education", train, valid=valid, method="cnf", fraction=0.05,
                         epochs=1, progress=False)
    assert few.trainable_share < 0.2
    backbone = {n for n, _ in model.network.named_parameters() if not n.startswith("task_heads.")}
    assert set(model.flatness) == backbone
    train2 = train.assign(female=(train["gender"].astype(str) == "Female").astype(int))
    valid2 = valid.assign(female=(valid["gender"].astype(str) == "Female").astype(int))
    second = mtrec.add_task(model, "female", train2, valid=valid2, method="cnf", epochs=1, progress=False)
    assert second.details["importance_elements"] == {"stored": sum(model.flatness[n].numel() for n in backbone),
                                                     "probed": 0}
    loaded = mtrec.load(mtrec.save(model, tmp_path / "cnf"))
    assert np.array_equal(loaded.predict(test).to_numpy(), model.predict(test).to_numpy())


def test_cnf_reads_the_pretraining_statistics(adult, small):
    train, valid, _ = small
    model = fresh(adult)
    mtrec.train(model, train, valid=valid, seed=0, flatness={"rho": 0.05}, **STEPS)
    pre = dict(model.flatness)
    result = mtrec.add_task(model, "education", train, valid=valid, method="cnf", epochs=1, progress=False)
    counts = result.details["importance_elements"]
    assert counts["stored"] == sum(v.numel() for v in pre.values()) and counts["probed"] > 0  # tables probed
    with pytest.raises(TypeError, match="unknown option"):
        mtrec.add_task(copy.deepcopy(model), "female", train, method="cnf", ewc_lambda=1.0, progress=False)
