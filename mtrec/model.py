"""MultiTaskModel: a pretrain_stack network plus what it needs to read raw frames (schema, vocabularies, tasks)."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import pandas as pd
import torch

import pretrain_stack
import mtrec.models  # noqa: F401  (registers the multi-task components)
from mtrec.data.batches import Batch, EncodedFrame, encode_frame
from mtrec.data.io import read_frame
from mtrec.data.schema import Schema
from mtrec.data.vocab import Vocabularies
from mtrec.train.config import Recipe


def task_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Sigmoid of [B, T] logits one task column at a time, so a task's probabilities do not depend on how many
    tasks sit beside it (the CPU kernel's vectorized body and scalar tail round differently)."""
    return torch.stack([torch.sigmoid(logits[:, t].contiguous()) for t in range(logits.shape[1])], dim=1)


class NotTrainedError(RuntimeError):
    """The model has no network yet: vocabularies are fitted (and tables sized) by the first training run."""


class MultiTaskModel:
    """One model predicting several binary tasks from a frame's sparse and dense features."""

    def __init__(self, name: str, schema: Schema, tasks: list[str], recipe: Recipe) -> None:
        self.name = name
        self.schema = schema.with_tasks(list(tasks))
        self.tasks = list(tasks)
        self.recipe = recipe
        self.vocabs: Vocabularies | None = None
        self.network: pretrain_stack.Model | None = None
        self.extensions: list[dict[str, Any]] = []

    # construction -------------------------------------------------------------------------------
    def build_network(self, vocabs: Vocabularies, seed: int = 0) -> pretrain_stack.Model:
        """Size the tables from the fitted vocabularies and build the network (seeded, so init is repeatable)."""
        self.vocabs = vocabs
        torch.manual_seed(seed)
        self.network = pretrain_stack.build_model(
            self.recipe.model, features=vocabs.feature_specs(), num_dense=len(self.schema.dense),
            tasks=list(self.tasks))
        return self.network

    @property
    def is_built(self) -> bool:
        """Whether tables are sized and weights exist."""
        return self.network is not None and self.vocabs is not None

    def require_network(self) -> pretrain_stack.Model:
        """The network, or a clear error if the model was never trained or loaded."""
        if self.network is None or self.vocabs is None:
            raise NotTrainedError(f"model {self.name!r} has no weights yet: call mtrec.train(model, ...) or mtrec.load(path)")
        return self.network

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Parameter count of the network (embedding tables included)."""
        net = self.require_network()
        return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)

    # data ---------------------------------------------------------------------------------------
    def encode(self, df: pd.DataFrame | str, tasks: list[str] | None = None, require_labels: bool = True) -> EncodedFrame:
        """Validate and encode a frame (or Parquet/CSV path) with this model's vocabularies."""
        self.require_network()
        frame = read_frame(df)
        return encode_frame(frame, self.schema, self.vocabs, tasks=tasks if tasks is not None else self.tasks,
                            require_labels=require_labels)

    # inference ----------------------------------------------------------------------------------
    def logits_of(self, batch: Batch) -> torch.Tensor:
        """Per-task logits [B, T] for one batch (no grad bookkeeping by the caller's choice)."""
        out = self.require_network()(batch.as_dict())
        return out["logits"]

    def iter_probabilities(self, encoded: EncodedFrame, batch_size: int = 8192) -> Iterator[np.ndarray]:
        """Yield [B, T] probabilities batch by batch, in input order."""
        net = self.require_network()
        was_training = net.training
        net.eval()
        try:
            with torch.no_grad():  # not inference_mode: fused FBGEMM training modules need the autograd kernels
                for batch in encoded.batches(batch_size, shuffle=False):
                    yield task_probabilities(self.logits_of(batch)).float().numpy()
        finally:
            net.train(was_training)

    def predict_array(self, df: pd.DataFrame | str | EncodedFrame, batch_size: int = 8192) -> np.ndarray:
        """[N, T] probabilities for every task."""
        encoded = df if isinstance(df, EncodedFrame) else self.encode(df, require_labels=False)
        parts = list(self.iter_probabilities(encoded, batch_size))
        return np.concatenate(parts) if parts else np.zeros((0, len(self.tasks)), dtype=np.float32)

    def predict(self, df: pd.DataFrame | str, batch_size: int = 8192) -> pd.DataFrame:
        """A DataFrame with one probability column per task, indexed like the input."""
        frame = read_frame(df)
        probs = self.predict_array(frame, batch_size)
        return pd.DataFrame(probs, columns=list(self.tasks), index=frame.index)

    def __repr__(self) -> str:
        size = f", {self.num_parameters():,} params" if self.is_built else ", not trained"
        return f"MultiTaskModel({self.name!r}, tasks={self.tasks}{size})"


def model_from_manifest(manifest: dict[str, Any], where: str = "manifest", seed: int = 0) -> MultiTaskModel:
    """A MultiTaskModel with its network built (seeded init, added tasks restored) from a checkpoint manifest;
    every checkpoint kind (fp32, sharded, quantized) rebuilds its architecture through this one function."""
    from mtrec.train.checkpoint import CheckpointError

    try:
        recipe = Recipe.from_dict(manifest["recipe"])
        schema = Schema.from_dict(manifest["schema"])
        vocabs = Vocabularies.from_dict(manifest["vocabularies"])
        tasks, name = manifest["tasks"], manifest["name"]
        extensions = manifest.get("extensions", [])
        added = {e["task"] for e in extensions}
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: manifest is incomplete or invalid ({exc})") from exc
    model = MultiTaskModel(name, schema, [t for t in tasks if t not in added], recipe)
    model.build_network(vocabs, seed=seed)
    if extensions:
        from mtrec.tasks import restore_extension

        for extension in extensions:
            restore_extension(model, extension)
    return model
