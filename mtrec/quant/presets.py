"""One precision everywhere: the presets, their plans, and the inference copy `predict --precision` scores with
(kept apart from the planner, so scoring in a preset precision loads no search or training code)."""

from __future__ import annotations

from mtrec.model import MultiTaskModel
from mtrec.quant.precision import AUTO, QuantizationError, require_fp32
from mtrec.quant.quantized import QuantizedModel
from mtrec.quant.units import find_units

PRESETS = {"fp32": ("fp32", "fp32"), "fp16": ("fp16", "fp16"), "int8": ("int8", "int8"), "int4": ("int4", "int8")}


def uniform_plan(model: MultiTaskModel, tables: str = "int8", dense: str = "int8") -> dict[str, str]:
    """Every table at `tables` and every dense unit at `dense`."""
    return {u.name: tables if u.kind == "table" else dense for u in find_units(model.require_network())}


def preset_plan(model: MultiTaskModel, precision: str) -> dict[str, str]:
    """One precision everywhere: fp32, fp16, int8, or int4 (int4 tables, int8 dense: CPUs have no int4 GEMM)."""
    if precision not in PRESETS:
        raise QuantizationError(f"precision must be one of {', '.join(PRESETS)}, got {precision!r}")
    return uniform_plan(model, *PRESETS[precision])


def with_precision(model: MultiTaskModel | QuantizedModel, precision: str | None) -> MultiTaskModel | QuantizedModel:
    """`model` itself for precision None/"auto"; else the inference copy of an fp32 model with that precision
    everywhere (QuantizationError for a quantized one: see require_fp32)."""
    if precision in (None, AUTO):
        return model
    require_fp32(precision, isinstance(model, QuantizedModel))
    return QuantizedModel.from_model(model, preset_plan(model, precision))
