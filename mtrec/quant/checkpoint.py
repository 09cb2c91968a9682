"""Quantized checkpoints: the quantized tensors themselves (int8/fp16 dense weights with fp32 scales, packed
table rows), so the file is as small as the model and loading is bit-exact with no re-quantization.

Layout: the mtrec checkpoint directory (manifest.json + vocabularies.parquet + weights.pt, written atomically,
loaded with `weights_only=True`), manifest kind "quantized" with the plan and the planner's report; weights.pt holds
{"network": state of every non-table module, "tables": {ebc path: {"<table>.weight", "<table>.scale_shift"}}}.
Loading rebuilds the architecture from the manifest (recipe, vocabularies, added tasks), applies the plan's
structure and then the saved tensors.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchrec.quant.embedding_modules import EmbeddingBagCollection as QuantEmbeddingBagCollection

from mtrec.checkpoint import (CheckpointError, manifest_of, model_files, model_from_manifest, read_manifest,
                              read_tensors, write_checkpoint)
from mtrec.quant.quantized import QuantizedModel
from mtrec.quant.tables import table_precisions, table_state, tables_from_state
from mtrec.quant.units import convert

KIND = "quantized"


def _table_modules(network: nn.Module) -> dict[str, QuantEmbeddingBagCollection]:
    return {path: m for path, m in network.named_modules() if isinstance(m, QuantEmbeddingBagCollection)}


def _dense_state(network: nn.Module) -> dict[str, torch.Tensor]:
    """The network's state without the quantized tables' internals (saved separately as plain rows)."""
    prefixes = tuple(path + "." for path in _table_modules(network))
    return {k: v for k, v in network.state_dict().items() if not k.startswith(prefixes)}


def save_quantized(model: QuantizedModel, path: str | Path, overwrite: bool = False) -> Path:
    """Write a quantized checkpoint directory atomically (replacing a checkpoint only with overwrite)."""
    if not isinstance(model, QuantizedModel):
        raise TypeError(f"mtrec.save expects a MultiTaskModel or a QuantizedModel, got {type(model).__name__}")
    manifest = manifest_of(model, KIND, plan=model.plan, report=model.report)
    tensors = {"network": _dense_state(model.network),
               "tables": {p: table_state(m) for p, m in _table_modules(model.network).items()}}
    return write_checkpoint(path, manifest, tensors, model_files(model), overwrite=overwrite)


def load_quantized(path: str | Path) -> QuantizedModel:
    """Rebuild a QuantizedModel from a quantized checkpoint directory (tensors load with weights_only=True)."""
    manifest = read_manifest(path)
    if manifest.get("kind") != KIND:
        raise CheckpointError(f"checkpoint {path} holds a {manifest.get('kind')!r} model, not a quantized model")
    try:
        model = model_from_manifest(manifest, where=f"checkpoint {path}", directory=path)
        plan = dict(manifest["plan"])
        network = convert(model.require_network(), plan)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: manifest is incomplete or invalid ({exc})") from exc
    state = read_tensors(path, manifest)
    try:
        for table_path, module in _table_modules(network).items():
            rebuilt = tables_from_state(module.embedding_bag_configs(), table_precisions(module),
                                        module.is_weighted(), state["tables"][table_path])
            parent, _, child = table_path.rpartition(".")
            setattr(network.get_submodule(parent), child, rebuilt)
        expected = set(_dense_state(network))
        saved = state["network"]
        if set(saved) != expected:
            missing, extra = sorted(expected - set(saved)), sorted(set(saved) - expected)
            raise CheckpointError(f"checkpoint {path}: weights do not match the plan in the manifest "
                                  f"(missing {missing[:3]}, unexpected {extra[:3]})")
        network.load_state_dict(saved, strict=False)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: weights do not match the model in the manifest ({exc})") from exc
    return QuantizedModel(model.spec(), plan, network, manifest.get("report"))
