"""Quantizable units of a network (each embedding table, each dense layer stack) and applying a plan to them.

A plan maps unit names to precisions; units it leaves out stay fp32. Unit names are module paths: a table is
"<ebc path>:<table>", a dense unit the path of a `BatchedLinear` or `nn.Linear` ("encoder.experts.net.0").
Whatever the network contains is covered, new-task heads included. `convert` never changes its input.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torchrec import EmbeddingBagCollection
from torchrec.quant.embedding_modules import EmbeddingBagCollection as QuantEmbeddingBagCollection

from mtrec.models.layers import BatchedLinear
from mtrec.quant.dense import chain, quantize_dense
from mtrec.quant.precision import DENSE_PRECISIONS, TABLE_PRECISIONS, QuantizationError, check_precision
from mtrec.quant.tables import quantize_tables, table_bytes, table_state


@dataclass(frozen=True)
class Unit:
    """One quantizable part: a table of an EBC, or a dense layer (stack)."""

    name: str
    kind: str
    module: str
    table: str | None
    params: int
    precisions: tuple[str, ...]

    def nbytes(self, precision: str, network: nn.Module) -> int:
        """Bytes this unit's weights take at `precision` (quantized layers keep an fp32 bias, int8 an fp32 scale per
        output channel)."""
        check_precision(precision, self.kind, self.name)
        module = network.get_submodule(self.module)
        if self.kind == "table":
            config = next(c for c in module.embedding_bag_configs() if c.name == self.table)
            return table_bytes(config.num_embeddings, config.embedding_dim, precision)
        weights, channels = module.weight.numel(), module.weight.numel() // module.in_features
        if precision == "fp32":
            return weights * 4 + (0 if module.bias is None else module.bias.numel() * 4)
        if precision == "fp16":
            return weights * 2 + channels * 4
        return weights + channels * 8


def find_units(network: nn.Module) -> list[Unit]:
    """Every table of every TorchRec EBC and every BatchedLinear / nn.Linear, in module order (a `sequence` part's
    transformer feed-forward layers and attention scorer included); the output projection of an
    nn.MultiheadAttention is not a unit: the attention kernel reads its weight tensor directly."""
    units: list[Unit] = []
    inside_attention = {id(m.out_proj) for m in network.modules() if isinstance(m, nn.MultiheadAttention)}
    for path, module in network.named_modules():
        if id(module) in inside_attention:
            continue
        if isinstance(module, EmbeddingBagCollection):
            for config in module.embedding_bag_configs():
                units.append(Unit(f"{path}:{config.name}", "table", path, config.name,
                                  config.num_embeddings * config.embedding_dim, TABLE_PRECISIONS))
        elif isinstance(module, (BatchedLinear, nn.Linear)):
            units.append(Unit(path, "dense", path, None, sum(p.numel() for p in module.parameters()),
                              DENSE_PRECISIONS))
    return units


def check_plan(units: list[Unit], plan: dict[str, str]) -> dict[str, str]:
    """The plan with every unit named (fp32 where it was silent); QuantizationError for unknown units."""
    by_name = {u.name: u for u in units}
    unknown = [name for name in plan if name not in by_name]
    if unknown:
        raise QuantizationError(f"plan names unknown unit(s) {unknown[:3]}; units are e.g. "
                                f"{[u.name for u in units[:3]]}")
    return {u.name: check_precision(plan.get(u.name, "fp32"), u.kind, u.name) for u in units}


def fused_relu(parent: nn.Module, child: str) -> bool:
    """Whether `parent.child` is followed by a ReLU inside an nn.Sequential (so the kernel can apply it)."""
    if not isinstance(parent, nn.Sequential):
        return False
    names = list(parent._modules)
    i = names.index(child)
    return i + 1 < len(names) and isinstance(parent._modules[names[i + 1]], nn.ReLU)


def convert(network: nn.Module, plan: dict[str, str], ranges: dict[str, tuple[float, float]] | None = None
            ) -> nn.Module:
    """An inference copy of `network`: every EBC in FBGEMM's table-batched kernel (tables at their planned
    precision), planned dense units in int8/fp16 with a following ReLU fused (int8 activations calibrated to
    `ranges`, {module path: input (min, max)}; an MLP's Sequential made an Int8Chain, so consecutive int8 layers
    pass uint8); eval mode."""
    units = find_units(network)
    full = check_plan(units, plan)
    out = copy.deepcopy(network).eval()
    for path, module in list(out.named_modules()):
        if isinstance(module, EmbeddingBagCollection):
            precisions = {u.table: full[u.name] for u in units if u.kind == "table" and u.module == path}
            replace_module(out, path, quantize_tables(module, precisions))
    for unit in units:
        precision = full[unit.name]
        if unit.kind != "dense" or precision == "fp32":
            continue
        parent_path, _, child = unit.module.rpartition(".")
        parent = out.get_submodule(parent_path)
        relu = fused_relu(parent, child)
        replace_module(out, unit.module, quantize_dense(parent.get_submodule(child), precision, relu,
                                                        (ranges or {}).get(unit.module)))
        if relu:
            names = list(parent._modules)
            parent._modules[names[names.index(child) + 1]] = nn.Identity()
        chain(out, parent_path)
    return out.eval()


def replace_module(root: nn.Module, path: str, module: nn.Module) -> None:
    """Put `module` at dotted `path` inside `root`. A transformer layer given a quantized feed-forward layer is kept
    off torch's fused inference kernel (which reads linear1/linear2 as float weight tensors) by a no-op pre-hook,
    the switch nn.TransformerEncoderLayer itself checks."""
    parent_path, _, child = path.rpartition(".")
    parent = root.get_submodule(parent_path)
    setattr(parent, child, module)
    if isinstance(parent, nn.TransformerEncoderLayer) and not isinstance(module, nn.Linear) \
            and _standard_path not in parent._forward_pre_hooks.values():
        parent.register_forward_pre_hook(_standard_path)


def _standard_path(module: nn.Module, args: tuple) -> None:
    """A forward pre-hook that changes nothing: its presence makes the layer run its module-by-module path."""
    return None


def network_bytes(network: nn.Module) -> int:
    """Bytes of the weights an inference network keeps (its state; quantized tables as packed rows)."""
    total = 0
    skip: list[str] = []
    for path, module in network.named_modules():
        if any(path.startswith(prefix) for prefix in skip):
            continue
        if isinstance(module, QuantEmbeddingBagCollection):
            total += sum(t.numel() * t.element_size() for t in table_state(module).values())
            skip.append(path + ".")
            continue
        tensors = list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False))
        persistent = set(module.state_dict(keep_vars=True)) if tensors else set()
        total += sum(t.numel() * t.element_size() for n, t in tensors if n in persistent)
    return total


def fp32_state_bytes(network: nn.Module) -> int:
    """Bytes of the fp32 network's saved state (what `mtrec.save` writes as weights)."""
    return sum(t.numel() * t.element_size() for t in network.state_dict().values() if isinstance(t, torch.Tensor))
