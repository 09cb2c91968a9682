"""Fixtures of the task-addition tests: one intra-op thread, small adult frames with extra labels, model copies."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module (pytestmark usefixtures): its ops are small and a second thread on a busy
    2-core box is slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def frames(adult):
    """Small train/valid/test frames (with two extra binary labels) so every addition takes about a second."""
    def extra(df: pd.DataFrame) -> pd.DataFrame:
        occupation = df["occupation"].astype(str)
        return df.assign(professional=occupation.isin(["Prof-specialty", "Exec-managerial"]).astype(int),
                         female=(df["gender"].astype(str) == "Female").astype(int))

    return extra(adult.train.head(8000)), extra(adult.valid.head(2000)), extra(adult.test.head(3000))


@pytest.fixture()
def model(trained_adult_mptrec):
    """A private copy of the session's trained mptrec model (adding a task changes a model in place)."""
    return copy.deepcopy(trained_adult_mptrec[0])
