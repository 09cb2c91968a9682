"""Predictor: batched inference of an inference network (quantized or not) from frames or JSON-like rows.

Preprocessing is vectorized (`FastEncoder`: numpy lookups per column for clean frames, the data layer's
validating encoder otherwise; ids laid out key-major, so a batch's KJT is a slice); every batch then runs the
whole network once under `torch.inference_mode`: all tasks' towers are batched inside the network, so there is
no per-task Python on the hot path.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from mtrec.data.batches import Batch, EncodedFrame, encode_frame
from mtrec.data.io import read_frame
from mtrec.data.schema import Schema
from mtrec.data.vocab import Vocabularies
from mtrec.errors import DataError
from mtrec.model import task_probabilities
from mtrec.models.inputs import run_network
from mtrec.quant.features import FastEncoder


class Predictor:
    """Per-task probabilities from an inference network, its schema, vocabularies and task names."""

    def __init__(self, network: nn.Module, schema: Schema, vocabs: Vocabularies, tasks: Sequence[str],
                 batch_size: int = 8192) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.network = network.eval()
        self.schema, self.vocabs, self.tasks = schema, vocabs, list(tasks)
        self.batch_size = batch_size
        self.encoder = FastEncoder(schema, vocabs)

    def encode(self, df: pd.DataFrame | str, require_labels: bool = False) -> EncodedFrame:
        """Validate and encode a frame (DataError names the column and the first bad row); labels only when
        required (for evaluation), so prediction never looks at label columns."""
        frame = read_frame(df)
        if require_labels:
            return encode_frame(frame, self.schema, self.vocabs, tasks=self.tasks, require_labels=True)
        return self.encoder.encode(frame)

    def batches(self, encoded: EncodedFrame, batch_size: int | None = None) -> Iterator[Batch]:
        """Consecutive batches of an encoded frame (the network reads only their features)."""
        return encoded.batches(batch_size or self.batch_size)

    def logits(self, batch: Batch) -> torch.Tensor:
        """[B, T] logits of one batch (call under torch.inference_mode)."""
        return run_network(self.network, batch)["logits"]

    def predict_encoded(self, encoded: EncodedFrame, batch_size: int | None = None) -> np.ndarray:
        """[N, T] float32 probabilities, in row order."""
        out = np.empty((len(encoded), len(self.tasks)), dtype=np.float32)
        start = 0
        with torch.inference_mode():
            for batch in self.batches(encoded, batch_size):
                probs = task_probabilities(self.logits(batch))
                out[start:start + len(batch)] = probs.numpy()
                start += len(batch)
        return out

    def predict_many(self, parts: list[EncodedFrame]) -> list[np.ndarray]:
        """Probabilities of several encoded frames (a serving micro-batch) from one pass of the network when they
        have only single-valued features (their ids and dense values are concatenated), else one pass each."""
        if len(parts) == 1 or any(p.jagged for p in parts):
            return [self.predict_encoded(p) for p in parts]
        merged = EncodedFrame(parts[0].keys, torch.cat([p.single for p in parts], dim=1), {},
                              torch.cat([p.dense for p in parts]), None, [], pd.RangeIndex(sum(map(len, parts))))
        probs = self.predict_encoded(merged)
        return np.split(probs, np.cumsum([len(p) for p in parts])[:-1])

    def predict_array(self, df: pd.DataFrame | str | EncodedFrame, batch_size: int | None = None) -> np.ndarray:
        """[N, T] probabilities of a frame, a Parquet/CSV path or an already encoded frame."""
        encoded = df if isinstance(df, EncodedFrame) else self.encode(df)
        return self.predict_encoded(encoded, batch_size)

    def predict(self, df: pd.DataFrame | str, batch_size: int | None = None) -> pd.DataFrame:
        """A DataFrame with one probability column per task, indexed like the input."""
        frame = read_frame(df)
        return pd.DataFrame(self.predict_array(frame, batch_size), columns=self.tasks, index=frame.index)

    def predict_rows(self, rows: Any) -> dict[str, list[float]]:
        """{task: [probability per row]} for a JSON-like list of row objects; DataError for anything else."""
        return self.to_columns(self.predict_array(self.frame_of_rows(rows)))

    def to_columns(self, probs: np.ndarray) -> dict[str, list[float]]:
        """{task: list of probabilities} from [N, T] probabilities."""
        return {task: probs[:, i].astype(float).tolist() for i, task in enumerate(self.tasks)}

    def frame_of_rows(self, rows: Any) -> pd.DataFrame:
        """A frame of a non-empty list of JSON objects (one per row); DataError when `rows` is not one."""
        if not isinstance(rows, list) or not rows:
            raise DataError(f"expected a non-empty JSON list of row objects, got {_describe(rows)}")
        bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
        if bad is not None:
            raise DataError(f"row {bad}: expected a JSON object of feature values, got {_describe(rows[bad])}",
                            row=bad)
        features = self.schema.features()
        for i, row in enumerate(rows):
            if any(f not in row for f in features):
                missing = next(f for f in features if f not in row)
                raise DataError(f"row {i}: feature {missing!r} is missing (every row needs {features})",
                                column=missing, row=i)
        return pd.DataFrame.from_records(rows)


def _describe(value: Any) -> str:
    """A short description of a JSON value for error messages."""
    if isinstance(value, list):
        return "an empty list" if not value else f"a list of {type(value[0]).__name__}"
    text = repr(value)
    return f"{type(value).__name__} {text[:40] + '...' if len(text) > 40 else text}"
