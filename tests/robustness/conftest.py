"""Fixtures of the hostile-input tests: a small built (untrained) model whose save takes a few milliseconds."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def small_model(adult):
    """A shared_bottom model on adult with its network built from the training split's vocabularies."""
    import mtrec
    from mtrec.data.vocab import Vocabularies

    model = mtrec.build_model("shared_bottom", schema=adult.schema, tasks=adult.tasks, dataset="adult")
    model.build_network(Vocabularies.fit(adult.train, adult.schema), seed=0)
    return model
