"""QuantizedModel: an inference network with a precision plan, its report, and the model's data contract."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from mtrec.data.batches import EncodedFrame
from mtrec.data.schema import Schema
from mtrec.data.vocab import Vocabularies
from mtrec.model import MultiTaskModel
from mtrec.quant.predictor import Predictor
from mtrec.quant.units import check_plan, convert, find_units, network_bytes
from mtrec.train.config import Recipe


class QuantizedModel:
    """A mixed-precision inference copy of a MultiTaskModel: `plan` (every unit -> precision), `report`, `predict`."""

    def __init__(self, name: str, schema: Schema, tasks: list[str], recipe: Recipe, vocabs: Vocabularies,
                 extensions: list[dict[str, Any]], plan: dict[str, str], network: nn.Module,
                 report: dict[str, Any] | None = None) -> None:
        self.name, self.schema, self.tasks, self.recipe = name, schema, list(tasks), recipe
        self.vocabs, self.extensions = vocabs, list(extensions)
        self.plan = dict(plan)
        self.network = network.eval()
        self.report: dict[str, Any] = dict(report or {})
        self.predictor = Predictor(self.network, schema, vocabs, self.tasks)

    @classmethod
    def from_model(cls, model: MultiTaskModel, plan: dict[str, str],
                   report: dict[str, Any] | None = None) -> QuantizedModel:
        """Convert `model`'s network with `plan` (units it does not name stay fp32)."""
        network = model.require_network()
        full = check_plan(find_units(network), plan)
        return cls(model.name, model.schema, model.tasks, model.recipe, model.vocabs, model.extensions, full,
                   convert(network, full), report)

    @property
    def nbytes(self) -> int:
        """Bytes of the inference weights (quantized tables as packed rows, int8 scales included)."""
        return network_bytes(self.network)

    def encode(self, df: pd.DataFrame | str, require_labels: bool = True) -> EncodedFrame:
        """Validate and encode a frame with the model's vocabularies (what `mtrec.evaluate` calls)."""
        return self.predictor.encode(df, require_labels=require_labels)

    def predict_array(self, df: pd.DataFrame | str | EncodedFrame, batch_size: int = 8192) -> np.ndarray:
        """[N, T] probabilities for every task."""
        return self.predictor.predict_array(df, batch_size)

    def predict(self, df: pd.DataFrame | str, batch_size: int = 8192) -> pd.DataFrame:
        """A DataFrame with one probability column per task, indexed like the input."""
        return self.predictor.predict(df, batch_size)

    def summary(self) -> str:
        """Plan and measured effect in a few lines."""
        counts: dict[str, int] = {}
        for precision in self.plan.values():
            counts[precision] = counts.get(precision, 0) + 1
        lines = [f"QuantizedModel({self.name!r}, tasks={self.tasks}): "
                 + ", ".join(f"{n} units {p}" for p, n in sorted(counts.items()))]
        if "fp32_bytes" in self.report:
            lines.append(f"  bytes {self.nbytes:,} = {self.nbytes / self.report['fp32_bytes']:.1%} of fp32 "
                         f"({self.report['fp32_bytes']:,})")
        for task, drop in self.report.get("auc_drop", {}).items():
            lines.append(f"  {task}: AUC {self.report['auc'][task]:.4f} (drop {drop:+.5f} on calibration data)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary().splitlines()[0]
