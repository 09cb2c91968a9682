"""The public Python API (DESIGN §4): build_model, train, evaluate, save, load."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from mtrec.data.io import read_frame
from mtrec.data.schema import Schema
from mtrec.model import MultiTaskModel, model_from_manifest
from mtrec.train.checkpoint import CheckpointError, read_manifest, read_tensors, write_checkpoint
from mtrec.train.config import Recipe, load_recipe
from mtrec.train.loop import TrainResult, evaluate_encoded
from mtrec.train.loop import train as _train

if TYPE_CHECKING:
    from mtrec.quant.quantized import QuantizedModel

MODEL_NAMES = ("single", "shared_bottom", "mmoe", "ple", "stem", "mptrec")


def build_model(name: str, schema: Schema, tasks: list[str] | None = None, dataset: str | None = None,
                recipe: str | Path | Recipe | None = None, overrides: dict[str, Any] | list[str] | None = None) -> MultiTaskModel:
    """A multi-task model from its recipe (mtrec/configs/<name>_<dataset>.yaml, or a given file/Recipe)."""
    if isinstance(recipe, Recipe):
        resolved = recipe
    else:
        dataset = dataset or getattr(schema, "source", None)
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
    return _train(model, train_df, valid=valid, progress=progress, epochs=epochs, batch_size=batch_size, seed=seed,
                  **options)


def evaluate(model: MultiTaskModel, df: pd.DataFrame | str, batch_size: int = 8192) -> dict[str, dict[str, float]]:
    """{task: {"auc", "logloss", ...}} for every task the model predicts; the frame must carry their labels."""
    return evaluate_encoded(model, model.encode(read_frame(df)), batch_size)


def save(model: MultiTaskModel | QuantizedModel, path: str | Path) -> Path:
    """Write a checkpoint directory atomically (a QuantizedModel as quantized tensors); returns its path."""
    if not isinstance(model, MultiTaskModel):
        from mtrec.quant.checkpoint import save_quantized

        return save_quantized(model, path)
    network = model.require_network()
    manifest = {
        "kind": "multitask",
        "name": model.name,
        "tasks": model.tasks,
        "recipe": model.recipe.to_dict(),
        "schema": model.schema.to_dict(),
        "vocabularies": model.vocabs.to_dict(),
        "extensions": model.extensions,
    }
    return write_checkpoint(path, manifest, {"network": network.state_dict()})


def load(path: str | Path) -> MultiTaskModel | QuantizedModel:
    """Rebuild a model (or a QuantizedModel) from a checkpoint directory; weights load with weights_only=True."""
    manifest = read_manifest(path)
    if manifest.get("kind") == "quantized":
        from mtrec.quant.checkpoint import load_quantized

        return load_quantized(path)
    if manifest.get("kind") == "multitask-sharded":
        from mtrec.distributed.checkpoint import load_model as load_sharded

        return load_sharded(path)
    if manifest.get("kind") != "multitask":
        raise CheckpointError(f"checkpoint {path} holds a {manifest.get('kind')!r} model, not a multitask model")
    model = model_from_manifest(manifest, where=f"checkpoint {path}")
    state = read_tensors(path, manifest)
    try:
        model.require_network().load_state_dict(state["network"])
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {path}: weights do not match the model in the manifest ({exc})") from exc
    model.require_network().eval()
    return model
