"""The public Python API (DESIGN §4): build_model, train, evaluate, save, load, remove_task."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from mtrec.data.io import read_frame
from mtrec.data.profile import DataProfile
from mtrec.data.schema import Schema
from mtrec.checkpoint import load_model, read_manifest, save_model
from mtrec.model import MultiTaskModel
from mtrec.recipe import Recipe, load_recipe, recipe_path

if TYPE_CHECKING:
    from mtrec.quant.quantized import QuantizedModel
    from mtrec.train.loop import TrainResult


def build_model(name: str, schema: Schema, tasks: list[str] | None = None, dataset: str | None = None,
                recipe: str | Path | Recipe | None = None, overrides: dict[str, Any] | list[str] | None = None,
                data: pd.DataFrame | None = None) -> MultiTaskModel:
    """A multi-task model from its recipe: mtrec/configs/<name>_<dataset>.yaml for a shipped dataset, a given
    file/Recipe, or else one derived from the data (`data`, or the profile Schema.from_frame kept; printed)."""
    if isinstance(recipe, Recipe):
        resolved = recipe
    else:
        dataset = dataset or getattr(schema, "source", None)
        if recipe is None and recipe_path(name, dataset) is None:
            from mtrec.recipe_defaults import default_recipe, describe

            profile = DataProfile.of(read_frame(data), schema) if data is not None else schema.profile
            resolved = default_recipe(name, schema, profile, overrides)
            print(f"{name}: {describe(resolved, profile)}")
        else:
            resolved = load_recipe(recipe if recipe is not None else name, dataset=dataset, overrides=overrides)
    tasks = list(tasks) if tasks is not None else list(schema.tasks)
    if not tasks:
        raise ValueError("build_model: at least one task is needed")
    return MultiTaskModel(name, schema, tasks, resolved)


def train(model: MultiTaskModel, train_df: pd.DataFrame | str, valid: pd.DataFrame | str | None = None,
          epochs: int | None = None, batch_size: int | None = None, seed: int | None = None,
          progress: bool = True, workers: int | None = None, address: str | None = None,
          distributed: dict[str, Any] | None = None, **options: Any) -> TrainResult:
    """Train in this process (fused FBGEMM embedding optimizer + Adam, early stopping on valid mean AUC), or with
    `workers=N` / `address=` / `distributed=` on N Ray Train workers with sharded tables (mtrec.distributed)."""
    if workers is not None or address is not None or distributed is not None:
        from mtrec.distributed import train_distributed

        return train_distributed(model, train_df, valid, workers=workers, address=address, distributed=distributed,
                                 progress=progress, epochs=epochs, batch_size=batch_size, seed=seed, **options)
    from mtrec.train.loop import train as _train

    return _train(model, train_df, valid=valid, progress=progress, epochs=epochs, batch_size=batch_size, seed=seed,
                  **options)


def evaluate(model: MultiTaskModel, df: pd.DataFrame | str, batch_size: int = 8192,
             baseline: bool | pd.DataFrame | str = False) -> dict[str, dict[str, float]]:
    """{task: {"auc", "logloss", ...}} for every task the model predicts; the frame (or files, read as a stream)
    must carry their labels. `baseline` adds a logistic regression on one-hot features per task ("baseline_auc",
    "below_baseline", a BelowBaselineWarning when the model is below it): fitted on the given training frame/path,
    or with True out of fold on the evaluated frame itself."""
    from mtrec.data.stream import FileSource, StreamOptions, is_file_source
    from mtrec.train.loop import evaluate_encoded, evaluate_stream

    if is_file_source(df):
        if baseline is not False:
            raise ValueError("evaluate(baseline=...): give the evaluated rows as a DataFrame, not files")
        stream = FileSource.of(df).scan(model.schema, model.tasks, StreamOptions(), split="test")
        return evaluate_stream(model, stream, batch_size)
    encoded = model.encode(read_frame(df))
    metrics = evaluate_encoded(model, encoded, batch_size)
    if baseline is False:
        return metrics
    from mtrec.train.linear import baseline_aucs, beside_baseline

    fit = None if baseline is True else model.encode(read_frame(baseline))
    return beside_baseline(metrics, baseline_aucs(model.vocabs, encoded, fit))


def remove_task(model: MultiTaskModel, name: str) -> dict[str, Any]:
    """Retire a task added with `add_task` (in place): every other task's predictions stay bit-identical; returns
    the removed task's extension entry (its method and head spec)."""
    if not isinstance(model, MultiTaskModel):
        raise TypeError(f"remove_task needs an fp32 MultiTaskModel, got {type(model).__name__}")
    return model.remove_task(name)


def save(model: MultiTaskModel | QuantizedModel, path: str | Path, overwrite: bool = False) -> Path:
    """Write a checkpoint directory atomically (a QuantizedModel as quantized tensors); returns its path. An
    existing checkpoint is replaced only with `overwrite`; a path holding anything else is refused (OutputError)."""
    if not isinstance(model, MultiTaskModel):
        from mtrec.quant.checkpoint import save_quantized

        return save_quantized(model, path, overwrite=overwrite)
    return save_model(model, path, overwrite=overwrite)


def load(path: str | Path) -> MultiTaskModel | QuantizedModel:
    """Rebuild a model (or a QuantizedModel) from a checkpoint directory; weights load with weights_only=True."""
    manifest = read_manifest(path)
    if manifest.get("kind") == "quantized":
        from mtrec.quant.checkpoint import load_quantized

        return load_quantized(path)
    if manifest.get("kind") == "multitask-sharded":
        from mtrec.distributed.checkpoint import load_model as load_sharded

        return load_sharded(path)
    return load_model(path, manifest)
