"""Inference in mixed precision: per-table fp32/fp16/int8/int4 (TorchRec + FBGEMM), INT8/FP16 dense layers,
the SAMP-style planner that picks them within an AUC budget, a Predictor, and quantized checkpoints.

Names load on first use, so loading a quantized checkpoint does not import the planner (or training code)."""

from mtrec.lazy import lazy_exports

_EXPORTS = {
    **{name: "mtrec.quant.planner" for name in ("quantize", "MODES", "OBJECTIVES", "MAX_AUC_DROP")},
    **{name: "mtrec.quant.presets" for name in ("uniform_plan", "preset_plan", "with_precision", "PRESETS")},
    **{name: "mtrec.quant.precision" for name in ("TABLE_PRECISIONS", "DENSE_PRECISIONS", "QuantizationError",
                                                   "require_fp32")},
    "Predictor": "mtrec.quant.predictor", "QuantizedModel": "mtrec.quant.quantized",
    **{name: "mtrec.quant.units" for name in ("Unit", "convert", "find_units", "network_bytes")},
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = list(_EXPORTS)
