"""`predict --precision`: an fp32 model scored in one precision everywhere."""

from __future__ import annotations

from typing import Any

from mtrec.quant.planner import preset_plan
from mtrec.quant.quantized import QuantizedModel


def with_precision(model: Any, precision: str | None) -> Any:
    """`model` itself without a precision; otherwise its inference copy with that precision everywhere."""
    if precision is None:
        return model
    if isinstance(model, QuantizedModel):
        raise SystemExit("error: --precision applies to fp32 checkpoints; this checkpoint is already quantized")
    return QuantizedModel.from_model(model, preset_plan(model, precision))
