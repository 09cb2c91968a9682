"""Built-in datasets: `load(name)` returns the schema, task names and the train/valid/test frames."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mtrec.data.schema import Schema
from mtrec.errors import UsageError


@dataclass(repr=False)
class Dataset:
    """A dataset split three ways; frames carry every feature and every label column (tasks + new_tasks)."""

    name: str
    schema: Schema
    tasks: list[str]
    new_tasks: list[str]
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, tasks={self.tasks}, new_tasks={self.new_tasks}, "
                f"sparse={len(self.schema.sparse)}, dense={len(self.schema.dense)}, "
                f"rows={len(self.train)}/{len(self.valid)}/{len(self.test)})")


def _adult(**kwargs: Any) -> Dataset:
    from mtrec.data.datasets.adult import load_adult

    return load_adult(**kwargs)


def _movielens(**kwargs: Any) -> Dataset:
    from mtrec.data.datasets.movielens import load_movielens_100k

    return load_movielens_100k(**kwargs)


def _movielens_seq(**kwargs: Any) -> Dataset:
    """MovieLens-100k whose schema reads the ordered `history` sequence (the `*_movielens_seq` recipes)."""
    return _movielens(sequences=True, **kwargs)


def _synthetic(**kwargs: Any) -> Dataset:
    from mtrec.data.datasets.synthetic import synthetic

    return synthetic(**kwargs)


LOADERS: dict[str, Callable[..., Dataset]] = {
    "adult": _adult,
    "movielens-100k": _movielens,
    "movielens-100k-seq": _movielens_seq,
    "synthetic": _synthetic,
}


def names() -> list[str]:
    """Names `load` accepts."""
    return list(LOADERS)


def load(name: str, **kwargs: Any) -> Dataset:
    """Load a built-in dataset by name ("adult", "movielens-100k", "movielens-100k-seq", "synthetic"); kwargs go to
    its loader."""
    try:
        loader = LOADERS[name]
    except (KeyError, TypeError):
        raise UsageError(f"unknown dataset {name!r}; known datasets: {', '.join(LOADERS)}") from None
    return loader(**kwargs)


__all__ = ["Dataset", "LOADERS", "load", "names"]
