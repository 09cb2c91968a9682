"""Inference in mixed precision: per-table fp32/fp16/int8/int4 (TorchRec + FBGEMM), INT8/FP16 dense layers,
the SAMP-style planner that picks them within an AUC budget, a Predictor, and quantized checkpoints."""

from mtrec.quant.planner import MODES, OBJECTIVES, PRESETS, preset_plan, quantize, uniform_plan
from mtrec.quant.precision import DENSE_PRECISIONS, TABLE_PRECISIONS, QuantizationError
from mtrec.quant.predictor import Predictor
from mtrec.quant.quantized import QuantizedModel
from mtrec.quant.units import Unit, convert, find_units, network_bytes

__all__ = ["quantize", "uniform_plan", "preset_plan", "PRESETS", "MODES", "OBJECTIVES", "TABLE_PRECISIONS", "DENSE_PRECISIONS",
           "QuantizationError", "Predictor", "QuantizedModel", "Unit", "convert", "find_units", "network_bytes"]
