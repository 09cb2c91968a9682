"""A recipe for a user's own data, derived from its schema and a DataProfile (rows, distinct values per feature).

Rules (measured so far on Adult against the linear baseline, README "Your own data"; issue 12 §3 asks for
MovieLens-100k and synthetic sets of 20k / 200k / 2M rows too, `python -m benchmarks.defaults`):
- a table of n rows (distinct values + 1 for OOV) is 4 * ceil(1.5 * n ** 0.25) wide, within [8, 64]: a multiple
  of 4 as FBGEMM's fused kernels need; 3 rows -> 8, 4 -> 12, 50 -> 16, 1,000 -> 36, 10^5 and more -> 64;
- batch size: the largest power of two <= rows / 128, within [256, 4096] (>= 128 optimizer steps per epoch
  up to 512k rows); epochs: enough for about 2,000 steps, within [3, 30], stopped early on the validation set's
  mean AUC (patience 3);
- learning rates grow with sqrt(batch / 256): dense Adam 1e-3, Adagrad tables 0.05 (at most 0.2);
- light regularization: dropout 0.1 in the encoder, Adam weight decay 1e-5.
The encoder itself is the model's reference recipe (the MPT-Rec census settings, DESIGN §3).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import mtrec.models  # noqa: F401  (registers the components the recipe names)
from mtrec.data.profile import DataProfile
from mtrec.data.schema import Schema
from mtrec.recipe import Recipe, recipe_path
from pretrain_stack.config import config_from, read_file

REFERENCE = "adult"  # the dataset whose shipped recipe gives each model's encoder and target sections
MIN_WIDTH, MAX_WIDTH = 8, 64
MIN_BATCH, MAX_BATCH, ROWS_PER_STEP = 256, 4096, 128
TARGET_STEPS, MIN_EPOCHS, MAX_EPOCHS, PATIENCE = 2000, 3, 30, 3
DROPOUT, WEIGHT_DECAY = 0.1, 1e-5
UNPROFILED = {"width": 16, "batch_size": 512, "epochs": 10}  # without a profile (a hand-built schema, no data)


def embedding_width(rows: int, max_width: int = MAX_WIDTH) -> int:
    """Width of a table with `rows` rows: 4 * ceil(1.5 * rows ** 0.25), within [8, max_width]."""
    return max(MIN_WIDTH, min(max_width, 4 * math.ceil(1.5 * max(rows, 1) ** 0.25)))


def batch_size_for(rows: int) -> int:
    """The largest power of two <= rows / 128, within [256, 4096]."""
    return max(MIN_BATCH, min(MAX_BATCH, 2 ** int(math.log2(max(rows // ROWS_PER_STEP, 1)))))


def epochs_for(rows: int, batch_size: int) -> int:
    """Epochs for about 2,000 optimizer steps, within [3, 30]."""
    steps = max(rows // batch_size, 1)
    return max(MIN_EPOCHS, min(MAX_EPOCHS, math.ceil(TARGET_STEPS / steps)))


def table_widths(schema: Schema, profile: DataProfile | None, max_width: int = MAX_WIDTH) -> dict[str, int]:
    """Each sparse feature's table width from its distinct values (+1 row for OOV)."""
    if profile is None:
        return {f: min(UNPROFILED["width"], max_width) for f in schema.sparse}
    return {f: embedding_width(profile.cardinality.get(f, 0) + 1, max_width) for f in schema.sparse}


def default_recipe(model: str, schema: Schema, profile: DataProfile | None,
                   overrides: dict[str, Any] | list[str] | None = None, max_width: int = MAX_WIDTH) -> Recipe:
    """The recipe of `model` for data described by `schema` and `profile` (None: schema-only settings); `max_width`
    caps every table's width (a multiple of 4, >= 8)."""
    if max_width < MIN_WIDTH or max_width % 4:
        raise ValueError(f"max_width: a multiple of 4 and at least {MIN_WIDTH}, got {max_width}")
    base = read_file(recipe_path(model, REFERENCE))["model"]
    widths = table_widths(schema, profile, max_width)
    median = sorted(widths.values())[len(widths) // 2] if widths else UNPROFILED["width"]
    sections = copy.deepcopy(base)
    for part in sections["embedding"]["parts"]:
        if part["name"] in ("sparse_features", "task_sparse_features"):
            part["embedding_dim"] = median
            part["pooling"] = "mean" if schema.multi_valued else "sum"
        if part["name"] == "sparse_features":
            part["embedding_dims"] = widths
    if "dropout" in sections["encoder"]:
        sections["encoder"]["dropout"] = DROPOUT
    if profile is None:
        batch, epochs = UNPROFILED["batch_size"], UNPROFILED["epochs"]
    else:
        batch = batch_size_for(profile.rows)
        epochs = epochs_for(profile.rows, batch)
    scale = math.sqrt(batch / MIN_BATCH)
    train = {"epochs": epochs, "batch_size": batch, "lr": round(1e-3 * scale, 6),
             "embedding_lr": round(min(0.2, 0.05 * scale), 6), "embedding_optimizer": "adagrad",
             "weight_decay": WEIGHT_DECAY, "patience": PATIENCE}
    return config_from(Recipe, {"model": sections, "train": train}, overrides)


def describe(recipe: Recipe, profile: DataProfile | None, max_width: int = MAX_WIDTH) -> str:
    """One paragraph naming the derived settings and what they came from (build_model prints it)."""
    t = recipe.train
    part = next(p for p in recipe.model["embedding"]["parts"] if "embedding_dim" in p)
    widths = part.get("embedding_dims") or {}
    shown = ", ".join(f"{f} {w}" for f, w in widths.items()) or f"all {part['embedding_dim']}"
    basis = (f"{profile.rows:,} rows" if profile is not None
             else "no data profile (pass data=frame to build_model, or a schema from Schema.from_frame)")
    steps = f" ({profile.rows // t.batch_size:,} steps/epoch)" if profile is not None else ""
    rule = f"4*ceil(1.5*rows^0.25) in [{MIN_WIDTH}, {max_width}]"
    return (f"default recipe from {basis}: embedding widths {shown} ({rule}); "
            f"batch {t.batch_size}{steps}, up to {t.epochs} epochs, early stopping on valid (patience "
            f"{t.patience}); lr {t.lr:g}, embedding lr {t.embedding_lr:g}; dropout "
            f"{recipe.model['encoder'].get('dropout', 0.0):g}, weight decay {t.weight_decay:g}")
