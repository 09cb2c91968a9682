"""Pretrain a sequence encoder for a dataset's `sequence` features: pretrain_stack on the training split only.

`pretrain_encoder("movielens-100k", "runs/movielens-encoder")` writes the training split's interactions as a
ratings table, runs `pretrain_stack.pretrain` on it (SASRec by default: next-item prediction with a causal
transformer) and leaves in the output directory what a `sequence` part loads with `pretrained: DIR`: encoder/,
embedding/item/, embedding/position/, items.json (the item vocabulary), metrics.json and source.json (which
rows it saw). Validation and test interactions never reach the pretraining sequences.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtrec.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_RECIPE = Path(__file__).resolve().parent.parent / "pretrain_stack" / "configs" / "sasrec.yaml"
DEFAULT_OUT = "runs/movielens-encoder"
SOURCE_FILE = "source.json"
ML_COLUMNS = ("user_id", "item_id", "timestamp")
COLUMNS = {"movielens-100k": ML_COLUMNS, "movielens-100k-seq": ML_COLUMNS}  # user, item, time column by dataset


def training_interactions(dataset: str, train: pd.DataFrame) -> pd.DataFrame:
    """The training split as the ratings table pretrain_stack reads (user_id, movie_id, timestamp), in row order."""
    if dataset not in COLUMNS:
        raise UsageError(f"--dataset: pretraining knows {', '.join(COLUMNS)}, not {dataset!r}")
    import pandas as pd

    user, item, time = COLUMNS[dataset]
    return pd.DataFrame({"user_id": train[user].to_numpy(), "movie_id": train[item].to_numpy(),
                         "timestamp": train[time].to_numpy()})


def pretrain_encoder(dataset: str, out: str | Path, recipe: str | Path = DEFAULT_RECIPE,
                     overrides: list[str] | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Pretrain on `dataset`'s training split into `out`; returns pretrain_stack's metrics (and the source)."""
    from mtrec.data.datasets import load
    from pretrain_stack.config import load_config
    from pretrain_stack.pretrain import PretrainConfig, run

    out = Path(out)
    if (out / "encoder").exists() and not overwrite:
        raise UsageError(f"--out: {out} already holds an encoder; pass --overwrite to replace it")
    data = load(dataset)
    ratings = training_interactions(dataset, data.train)
    with tempfile.TemporaryDirectory(prefix="mtrec-pretrain-") as tmp:
        path = Path(tmp) / "train_interactions.parquet"
        ratings.to_parquet(path)
        cfg = load_config(PretrainConfig, recipe, [*(overrides or []), "--data.path", str(path),
                                                   "--output_dir", str(out)])
        result = run(cfg)
    source = {"dataset": dataset, "split": "train", "rows": int(len(ratings)),
              "users": int(ratings["user_id"].nunique()), "items": int(ratings["movie_id"].nunique()),
              "max_timestamp": int(ratings["timestamp"].max())}
    (out / SOURCE_FILE).write_text(json.dumps(source, indent=2))
    return {**result, "source": source}
