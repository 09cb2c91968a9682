"""MultiTaskModel: a pretrain_stack network plus what it needs to read raw frames (schema, vocabularies, tasks)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

import pretrain_stack
import mtrec.models  # noqa: F401  (registers the multi-task components)
from mtrec.data.batches import Batch, EncodedFrame, encode_frame, encode_table
from mtrec.data.io import read_frame
from mtrec.data.schema import Schema
from mtrec.data.vocab import Vocabularies
from mtrec.errors import DataError
from mtrec.models.extension import extend_target, shrink_target, task_heads
from mtrec.models.heads import TaskHead, build_head
from mtrec.models.inputs import run_network
from mtrec.models.sequence import SequenceEmbedding, sequence_specs
from mtrec.recipe import Recipe
from pretrain_stack.errors import ConfigError


def task_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Sigmoid of [B, T] logits (or of one task's [B]) one task column at a time, each padded to whole vector
    blocks and cut into single-threaded chunks, so no element ever lands in the CPU kernel's scalar tail (which
    rounds differently from its vectorized body): a row's probability depends neither on how many tasks sit beside
    it nor on its position or neighbours in the batch. Every scoring path (model.predict, the Predictor,
    distributed evaluation, new-task fits, batch scoring, the endpoint) goes through it, so a row's scores are the
    same bits on all of them."""
    if logits.dim() == 1:
        return _sigmoid_column(logits)
    return torch.stack([_sigmoid_column(logits[:, t]) for t in range(logits.shape[1])], dim=1)


SIGMOID_BLOCK = 64  # a multiple of every CPU vector width times ATen's 2x unrolled loop
SIGMOID_CHUNK = 32768  # ATen's parallel grain size: a chunk this long runs on one thread, unsplit


def _sigmoid_column(x: torch.Tensor) -> torch.Tensor:
    """Sigmoid of one task's [B] logits padded to whole blocks, in single-threaded chunks (one chunk: no concat)."""
    n = x.shape[0]
    padded = torch.nn.functional.pad(x.contiguous(), (0, (-n) % SIGMOID_BLOCK))
    if padded.shape[0] <= SIGMOID_CHUNK:
        return torch.sigmoid(padded)[:n]
    return torch.cat([torch.sigmoid(chunk) for chunk in padded.split(SIGMOID_CHUNK)])[:n]


class NotTrainedError(RuntimeError):
    """The model has no network yet: vocabularies are fitted (and tables sized) by the first training run."""


@dataclass(frozen=True)
class ModelSpec:
    """Everything that defines a model's predictions besides its weights: what a checkpoint manifest records and
    what an inference copy (QuantizedModel) reads, so neither copies a model's fields one by one."""

    name: str
    schema: Schema
    tasks: list[str]
    recipe: Recipe
    vocabs: Vocabularies
    extensions: list[dict[str, Any]] = field(default_factory=list)


class MultiTaskModel:
    """One model predicting several binary tasks from a frame's sparse and dense features.

    The model is the only writer of its own state: training builds the network through `build_network`, added
    tasks join through `attach_task` / `restore_extension` and leave through `remove_task`, a joint retrain swaps everything in `replace_with`.
    """

    def __init__(self, name: str, schema: Schema, tasks: list[str], recipe: Recipe) -> None:
        self.name = name
        self.schema = schema.with_tasks(list(tasks))
        self.tasks = list(tasks)
        self.recipe = recipe
        self.vocabs: Vocabularies | None = None
        self.network: pretrain_stack.Model | None = None
        self.extensions: list[dict[str, Any]] = []
        self.flatness: dict[str, torch.Tensor] = {}

    # construction -------------------------------------------------------------------------------
    def build_network(self, vocabs: Vocabularies, seed: int = 0, load_pretrained: bool = True) -> pretrain_stack.Model:
        """Size the tables from the fitted vocabularies and build the network (seeded, so init is repeatable).

        Sequence features go to the `sequence` parts, not the pooled tables; with `load_pretrained` (a fresh
        network, not a checkpoint's) those parts copy their pretrained encoders in, mapped onto `vocabs`."""
        self.vocabs = vocabs
        torch.manual_seed(seed)
        seq_cols = set(self.schema.sequence_columns)
        network = pretrain_stack.build_model(
            self.recipe.model, features=[f for f in vocabs.feature_specs() if f["name"] not in seq_cols],
            sequences=sequence_specs(self.schema, vocabs), num_dense=len(self.schema.dense), tasks=list(self.tasks))
        parts = [m for m in network.modules() if isinstance(m, SequenceEmbedding)]
        unread = [s for s in self.schema.sequences if s not in {p.feature for p in parts}]
        if unread:
            raise ConfigError(f"model.embedding.parts: schema sequence {unread[0]!r} is read by no `sequence` part; "
                              "add {name: sequence, feature: ...} to the recipe", key="model.embedding.parts")
        if load_pretrained:
            for part in parts:
                part.load_pretrained(vocabs)
        self.network = network
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

    def spec(self, vocabs: Vocabularies | None = None) -> ModelSpec:
        """The model's description without weights (copies: later changes to the model do not leak into it);
        `vocabs` stands in for the model's own before its first training has fitted them."""
        vocabs = vocabs or self.vocabs
        if vocabs is None:
            raise NotTrainedError(f"model {self.name!r} has no fitted vocabularies yet: train or load it first")
        return ModelSpec(self.name, self.schema, list(self.tasks), self.recipe, vocabs,
                         [dict(e) for e in self.extensions])

    # added tasks --------------------------------------------------------------------------------
    def attach_task(self, name: str, head: TaskHead, entry: dict[str, Any]) -> None:
        """Make the (trained) `head` the predictor of new task `name`: frozen, hooked after the encoder, given a
        weight in the loss, and recorded with `entry` in `extensions` (what a checkpoint rebuilds it from)."""
        network = self.require_network()
        if name in self.tasks:
            raise DataError(f"column {name!r} is already a task of the model (tasks: {self.tasks})", column=name)
        head.eval()
        for p in head.parameters():
            p.requires_grad_(False)
        task_heads(network).heads[name] = head
        extend_target(network.target, name)
        self.tasks.append(name)
        self.schema = self.schema.with_tasks(self.tasks)
        self.extensions.append({**entry, "task": name, "head": head.spec()})

    def set_flatness(self, stats: dict[str, torch.Tensor]) -> None:
        """Keep per-element flatness statistics of named network parameters (what sharpness-aware training
        measured, mtrec.train.flatness; add_task(method="cnf") reads them as importance). Saved with the model."""
        params = dict(self.require_network().named_parameters())
        for name, value in stats.items():
            if name not in params or params[name].shape != value.shape:
                raise ValueError(f"flatness statistics for {name!r} do not match a parameter of the network")
        self.flatness = {n: v.detach().clone().float() for n, v in stats.items()}

    def remove_task(self, name: str) -> dict[str, Any]:
        """Retire added task `name`: its head, loss weight and `extensions` entry go, every other task's predictions
        stay bit-identical (what a method moved in the backbone stays); returns the removed entry. DataError naming
        the column for a pre-training task or an unknown name."""
        network = self.require_network()
        added = [e["task"] for e in self.extensions]
        if name not in added:
            what = "a pre-training task" if name in self.tasks else "not a task"
            raise DataError(f"remove_task: {name!r} is {what} of the model; only added tasks can be removed "
                            f"(added: {', '.join(added) or 'none'})", column=name)
        index = self.tasks.index(name)
        del task_heads(network).heads[name]
        shrink_target(network.target, index)
        del self.tasks[index]
        self.schema = self.schema.with_tasks(self.tasks)
        return self.extensions.pop(added.index(name))

    def restore_extension(self, extension: dict[str, Any]) -> None:
        """Rebuild an added task's head from its `extensions` entry (its weights are loaded afterwards)."""
        try:
            name, spec = extension["task"], extension["head"]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"model extension {extension!r} lacks 'task' or 'head'") from exc
        self.attach_task(name, build_head(spec), {k: v for k, v in extension.items() if k not in ("task", "head")})

    def replace_with(self, other: MultiTaskModel) -> None:
        """Take over another model's network, vocabularies, tasks, schema and extensions (a joint retrain of the
        same recipe on more tasks replaces the whole model at once, never a part of it)."""
        if other.name != self.name:
            raise ValueError(f"replace_with: a {other.name!r} model cannot replace a {self.name!r} model")
        other.require_network()
        self.network, self.vocabs, self.recipe = other.network, other.vocabs, other.recipe
        self.tasks, self.schema = list(other.tasks), other.schema
        self.extensions = [dict(e) for e in other.extensions]
        self.flatness = dict(other.flatness)

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

    def encode_table(self, table: pa.Table, tasks: list[str] | None = None, require_labels: bool = True
                     ) -> EncodedFrame:
        """Validate and encode an Arrow table (a block of a file stream) with this model's vocabularies."""
        self.require_network()
        return encode_table(table, self.schema, self.vocabs, tasks=tasks if tasks is not None else self.tasks,
                            require_labels=require_labels)

    # inference ----------------------------------------------------------------------------------
    def logits_of(self, batch: Batch) -> torch.Tensor:
        """Per-task logits [B, T] for one batch (no grad bookkeeping by the caller's choice)."""
        return run_network(self.require_network(), batch)["logits"]

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
        encoded = df if isinstance(df, EncodedFrame) else self.encode(df, tasks=[], require_labels=False)
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
