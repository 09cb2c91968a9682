"""Shared fixtures: small real datasets loaded once per test session, and a thread cap for 2-core machines."""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def adult():
    """The adult dataset with its fixed split (DESIGN §5)."""
    import mtrec

    return mtrec.datasets.load("adult")


@pytest.fixture(scope="session")
def trained_adult_mptrec(adult, tmp_path_factory):
    """An mptrec model trained briefly on adult (shared by API, checkpoint and add-task tests)."""
    import mtrec

    model = mtrec.build_model("mptrec", schema=adult.schema, tasks=adult.tasks, dataset="adult")
    result = mtrec.train(model, adult.train, valid=adult.valid, epochs=2, seed=0, progress=False)
    return model, result
