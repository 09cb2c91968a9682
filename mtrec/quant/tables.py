"""Per-table precision (fp32 / fp16 / int8 / int4) through TorchRec's quantized EmbeddingBagCollection.

Every table of an EBC moves into FBGEMM's table-batched inference kernel (`IntNBitTableBatchedEmbeddingBagsCodegen`,
one lookup call for all tables), each at its own precision; int8/int4 rows are row-wise quantized with an fp16
scale and bias per row. Rows are packed without padding (row alignment 1), so memory is what the precision says.
"""

from __future__ import annotations

import dataclasses

import torch
from torchrec import EmbeddingBagCollection
from torchrec.modules.embedding_configs import DataType, EmbeddingBagConfig
from torchrec.quant.embedding_modules import EmbeddingBagCollection as QuantEmbeddingBagCollection
from torchrec.quant.embedding_modules import quantize_state_dict

from mtrec.quant.precision import BITS, QuantizationError, check_precision

DATA_TYPES = {"fp32": DataType.FP32, "fp16": DataType.FP16, "int8": DataType.INT8, "int4": DataType.INT4}
PRECISION_OF = {v: k for k, v in DATA_TYPES.items()}
ROW_ALIGNMENT = 1


def table_bytes(rows: int, dim: int, precision: str) -> int:
    """Bytes a table takes at `precision` (int rows carry a 4-byte fp16 scale + bias)."""
    row = dim * BITS[precision] // 8 + (4 if precision.startswith("int") else 0)
    return rows * row


def _configs(ebc: EmbeddingBagCollection | QuantEmbeddingBagCollection,
             precisions: dict[str, str]) -> list[EmbeddingBagConfig]:
    out = []
    for config in ebc.embedding_bag_configs():
        precision = check_precision(precisions.get(config.name, "fp32"), "table", config.name)
        out.append(dataclasses.replace(config, data_type=DATA_TYPES[precision]))
    return out


def _build(configs: list[EmbeddingBagConfig], weighted: bool,
           weights: dict[str, tuple[torch.Tensor, torch.Tensor | None]]) -> QuantEmbeddingBagCollection:
    return QuantEmbeddingBagCollection(configs, is_weighted=weighted, device=torch.device("cpu"),
                                       output_dtype=torch.float, table_name_to_quantized_weights=weights,
                                       register_tbes=True, row_alignment=ROW_ALIGNMENT)


def quantize_tables(ebc: EmbeddingBagCollection, precisions: dict[str, str]) -> QuantEmbeddingBagCollection:
    """A quantized copy of `ebc`, each table at `precisions[name]` (default fp32); `ebc` is left as it was."""
    unknown = set(precisions) - {c.name for c in ebc.embedding_bag_configs()}
    if unknown:
        raise QuantizationError(f"unknown table(s) {sorted(unknown)}; the EBC has "
                                f"{[c.name for c in ebc.embedding_bag_configs()]}")
    configs = _configs(ebc, precisions)
    weights: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
    with torch.no_grad():
        quantize_state_dict(ebc.embedding_bags, weights, {c.name: c.data_type for c in configs})
    return _build(configs, ebc.is_weighted(), weights)


def table_precisions(qebc: QuantEmbeddingBagCollection) -> dict[str, str]:
    """{table: precision} of a quantized EBC."""
    return {c.name: PRECISION_OF[c.data_type] for c in qebc.embedding_bag_configs()}


def table_state(qebc: QuantEmbeddingBagCollection) -> dict[str, torch.Tensor]:
    """The quantized rows as plain uint8 tensors: "<table>.weight" and, for int tables, "<table>.scale_shift"."""
    state: dict[str, torch.Tensor] = {}
    for tbe in qebc.tbes:
        for spec, (weight, scale_shift) in zip(tbe.embedding_specs, tbe.split_embedding_weights()):
            state[f"{spec[0]}.weight"] = weight.detach().clone()
            if scale_shift is not None:
                state[f"{spec[0]}.scale_shift"] = scale_shift.detach().clone()
    return state


def tables_from_state(configs: list[EmbeddingBagConfig], precisions: dict[str, str], weighted: bool,
                      state: dict[str, torch.Tensor]) -> QuantEmbeddingBagCollection:
    """Rebuild a quantized EBC from `table_state` output, bit for bit (no re-quantization)."""
    configs = [dataclasses.replace(c, data_type=DATA_TYPES[check_precision(precisions.get(c.name, "fp32"), "table",
                                                                           c.name)]) for c in configs]
    weights: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
    for c in configs:
        key = f"{c.name}.weight"
        if key not in state:
            raise QuantizationError(f"quantized table {c.name!r} is missing from the saved state")
        expected = table_bytes(c.num_embeddings, c.embedding_dim, PRECISION_OF[c.data_type])
        scale_shift = state.get(f"{c.name}.scale_shift")
        got = state[key].numel() + (0 if scale_shift is None else scale_shift.numel())
        if got != expected:
            raise QuantizationError(f"quantized table {c.name!r}: {got} bytes saved, {expected} expected for "
                                    f"{c.num_embeddings} x {c.embedding_dim} at {PRECISION_OF[c.data_type]}")
        weights[c.name] = (state[key], scale_shift)
    return _build(configs, weighted, weights)
