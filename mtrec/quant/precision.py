"""The precisions a unit can run in, and the torch dtypes TorchRec's quantized tables expect for them."""

from __future__ import annotations

import torch

FP32 = "fp32"
AUTO = "auto"  # score a checkpoint in the precision it was saved in
TABLE_PRECISIONS = ("fp32", "fp16", "int8", "int4")
DENSE_PRECISIONS = ("fp32", "fp16", "int8")
TABLE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "int8": torch.qint8, "int4": torch.quint4x2}
BITS = {"fp32": 32, "fp16": 16, "int8": 8, "int4": 4}


class QuantizationError(ValueError):
    """A plan or precision that cannot be applied to this model (unknown unit, unsupported precision)."""


def check_precision(precision: str, kind: str, unit: str = "") -> str:
    """`precision` if a unit of `kind` ("table" or "dense") supports it; QuantizationError otherwise."""
    allowed = TABLE_PRECISIONS if kind == "table" else DENSE_PRECISIONS
    if precision not in allowed:
        where = f"unit {unit!r}: " if unit else ""
        raise QuantizationError(f"{where}{kind} precision must be one of {', '.join(allowed)}, got {precision!r}")
    return precision


def require_fp32(precision: str | None, quantized: bool, source: str = "this checkpoint") -> None:
    """The rule for choosing a precision at scoring time: it applies only to an fp32 checkpoint (a quantized one
    scores as saved); QuantizationError otherwise."""
    if precision not in (None, AUTO) and quantized:
        raise QuantizationError(f"precision {precision!r} applies only to an fp32 checkpoint; {source} is already "
                                f"quantized (use precision {AUTO!r})")
