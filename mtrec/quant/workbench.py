"""An inference network whose units are switched between precisions in place, for the planner's many trials.

Converting a fresh copy per trial would copy every table each time; here one converted network is kept and only
the modules a trial changes are swapped (each (unit, precision) module is built once and cached).
"""

from __future__ import annotations

import copy

from torch import nn

from mtrec.quant.dense import chain, quantize_dense
from mtrec.quant.tables import quantize_tables
from mtrec.quant.units import Unit, check_plan, convert, fused_relu, replace_module


class Workbench:
    """`network` converted once; `apply(plan)` switches units to the plan's precisions in place (int8 dense units
    calibrated to `ranges`)."""

    def __init__(self, network: nn.Module, units: list[Unit],
                 ranges: dict[str, tuple[float, float]] | None = None) -> None:
        self.source, self.units, self.ranges = network, units, dict(ranges or {})
        self.network = convert(network, {})
        self.current = {u.name: "fp32" for u in units}
        self._cache: dict[tuple[str, str], nn.Module] = {}

    def apply(self, plan: dict[str, str]) -> nn.Module:
        """The network with every unit at `plan`'s precision (fp32 where the plan is silent)."""
        target = check_plan(self.units, plan)
        changed = [u for u in self.units if target[u.name] != self.current[u.name]]
        for unit in changed:
            if unit.kind == "dense":
                self._set_dense(unit, target[unit.name])
        for ebc in sorted({u.module for u in changed if u.kind == "table"}):
            precisions = {u.table: target[u.name] for u in self.units if u.kind == "table" and u.module == ebc}
            replace_module(self.network, ebc, quantize_tables(self.source.get_submodule(ebc), precisions))
        self.current = target
        return self.network

    def _set_dense(self, unit: Unit, precision: str) -> None:
        parent_path, _, child = unit.module.rpartition(".")
        source_parent = self.source.get_submodule(parent_path)
        layer = source_parent.get_submodule(child)
        relu = fused_relu(source_parent, child)
        key = (unit.name, precision)
        if key not in self._cache:
            self._cache[key] = copy.deepcopy(layer) if precision == "fp32" else \
                quantize_dense(layer, precision, relu, self.ranges.get(unit.module))
        chain(self.network, parent_path)
        parent = self.network.get_submodule(parent_path)
        replace_module(self.network, unit.module, self._cache[key])
        if relu:
            names = list(parent._modules)
            follower = names[names.index(child) + 1]
            parent._modules[follower] = nn.Identity() if precision != "fp32" else nn.ReLU()
