"""QuantizedModel: an inference network with a precision plan, its report, and the model's data contract."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from mtrec.data.batches import EncodedFrame
from mtrec.data.schema import Schema
from mtrec.data.vocab import Vocabularies
from mtrec.model import ModelSpec, MultiTaskModel
from mtrec.quant.calibrate import activation_ranges
from mtrec.quant.predictor import Predictor
from mtrec.quant.units import check_plan, convert, find_units, network_bytes
from mtrec.recipe import Recipe


class QuantizedModel:
    """A mixed-precision inference copy of a MultiTaskModel: `plan` (every unit -> precision), `report`, `predict`."""

    def __init__(self, spec: ModelSpec, plan: dict[str, str], network: nn.Module,
                 report: dict[str, Any] | None = None) -> None:
        self._spec = spec
        self.plan = dict(plan)
        self.network = network.eval()
        self.report: dict[str, Any] = dict(report or {})
        self.predictor = Predictor(self.network, spec.schema, spec.vocabs, list(spec.tasks))

    def spec(self) -> ModelSpec:
        """The description of the fp32 model this copy was made from (schema, vocabularies, tasks, ...)."""
        return self._spec

    @property
    def name(self) -> str:
        """The backbone's name."""
        return self._spec.name

    @property
    def schema(self) -> Schema:
        """The input schema (feature and task columns)."""
        return self._spec.schema

    @property
    def tasks(self) -> list[str]:
        """Task names, in the order of the probability columns."""
        return list(self._spec.tasks)

    @property
    def recipe(self) -> Recipe:
        """The fp32 model's recipe."""
        return self._spec.recipe

    @property
    def vocabs(self) -> Vocabularies:
        """The vocabularies the inputs are encoded with."""
        return self._spec.vocabs

    @property
    def extensions(self) -> list[dict[str, Any]]:
        """Tasks added after pre-training (as recorded in the checkpoint)."""
        return [dict(e) for e in self._spec.extensions]

    @classmethod
    def from_model(cls, model: MultiTaskModel, plan: dict[str, str], report: dict[str, Any] | None = None,
                   calibration: pd.DataFrame | str | EncodedFrame | None = None) -> QuantizedModel:
        """Convert `model`'s network with `plan` (units it does not name stay fp32). With `calibration` rows, int8
        dense layers get static activation scales from the input ranges seen on them (fast); without, each row is
        quantized with its own scale. Either way a row's score does not depend on its batch."""
        network = model.require_network()
        units = find_units(network)
        full = check_plan(units, plan)
        ranges = None
        if calibration is not None and "int8" in {full[u.name] for u in units if u.kind == "dense"}:
            encoded = calibration if isinstance(calibration, EncodedFrame) else \
                model.encode(calibration, require_labels=False)
            ranges = activation_ranges(network, encoded, units)
        return cls(model.spec(), full, convert(network, full, ranges), report)

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
