"""Self-adaptive mixed precision (after SAMP, Tencent, EMNLP 2023 industry track): choose which units run in
low precision so that every task's AUC stays within a budget while the model gets as fast (or small) as it can.

1. Sensitivity: each (unit, precision) alone is applied and the per-task AUC drop on the calibration data measured.
2. Gain: bytes saved (exact), and CPU time saved per batch of `batch_size` rows: the unit's module is timed on
   the inputs it really sees, against its fp32 self, interleaved (a fused ReLU is counted on both sides). A saving
   below 5% of the unit's time plus 2% of the whole network's counts as none (timing noise), so such units are
   ranked by bytes; a unit more than 5% slower than in fp32 is not quantized under objective="latency", and of
   a unit's precisions whose savings differ by less than that noise the smaller one is tried first.
3. Greedy: units are visited by gain per unit of AUC sensitivity; each tries its precisions from the largest gain
   down and keeps the first whose combined plan still has every task's drop <= `max_auc_drop` (measured, not
   summed). Under objective="latency", precisions that make their unit slower are not tried at all.
Modes `fully_quant` (every unit int8) and `dense_only` (dense units int8, tables fp32) skip the search.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from mtrec.data.batches import EncodedFrame
from mtrec.data.io import read_frame
from mtrec.errors import DataError
from mtrec.model import MultiTaskModel
from mtrec.quant.calibrate import activation_ranges
from mtrec.quant.dense import quantize_dense
from mtrec.quant.measure import auc_drops, median_seconds
from mtrec.quant.precision import QuantizationError
from mtrec.quant.presets import uniform_plan
from mtrec.quant.predictor import Predictor
from mtrec.quant.quantized import QuantizedModel
from mtrec.quant.tables import quantize_tables
from mtrec.quant.units import Unit, convert, find_units, fp32_state_bytes, fused_relu, network_bytes
from mtrec.quant.workbench import Workbench
from mtrec.train.metrics import task_aucs

OBJECTIVES = ("latency", "size")  # the first is the default
MODES = ("auto", "fully_quant", "dense_only")  # the first is the default
MAX_AUC_DROP = 0.001  # per-task AUC budget
UNIT_NOISE = 0.05
NETWORK_NOISE = 0.02


@dataclass
class Candidate:
    """One unit at one precision, measured alone."""

    unit: str
    precision: str
    auc_drop: dict[str, float]
    max_abs_diff: float
    bytes_saved: int
    seconds_saved: float
    fp32_seconds: float
    network_seconds: float
    accepted: bool | None = None

    @property
    def max_drop(self) -> float:
        """The worst task's AUC drop (0 when quantization helped every task)."""
        return max(0.0, *self.auc_drop.values())

    def benefit(self, objective: str) -> float:
        """What this candidate saves: CPU seconds per batch (latency; 0 within timing noise) or bytes (size)."""
        if objective == "size":
            return float(self.bytes_saved)
        noise = UNIT_NOISE * self.fp32_seconds + NETWORK_NOISE * self.network_seconds
        return self.seconds_saved if abs(self.seconds_saved) > noise else 0.0

    def not_slower(self) -> bool:
        """Whether the unit is at most timing noise (5% of its fp32 time) slower than in fp32."""
        return self.seconds_saved >= -UNIT_NOISE * self.fp32_seconds


@dataclass
class _Search:
    """What the greedy search works with: the model, calibration data and fp32 reference."""

    model: MultiTaskModel
    bench: Workbench
    encoded: EncodedFrame
    labels: np.ndarray
    base_auc: dict[str, float]
    base_probs: np.ndarray
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    evaluations: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def probabilities(self, plan: dict[str, str]) -> np.ndarray:
        """Calibration probabilities of the network with `plan`'s precisions."""
        self.evaluations += 1
        return self.predictor(plan).predict_encoded(self.encoded)

    def predictor(self, plan: dict[str, str]) -> Predictor:
        """A Predictor over the workbench network switched to `plan`."""
        net = self.bench.apply(plan)
        return Predictor(net, self.model.schema, self.model.vocabs, self.model.tasks)

    def drops(self, probs: np.ndarray) -> dict[str, float]:
        """Per-task AUC drop of `probs` against fp32."""
        return auc_drops(self.base_auc, task_aucs(self.labels, probs, self.model.tasks))



def quantize(model: MultiTaskModel, calibration: pd.DataFrame | str | None = None,
             max_auc_drop: float = MAX_AUC_DROP, objective: str = OBJECTIVES[0], mode: str = MODES[0],
             batch_size: int = 512, repeats: int = 30, progress: bool = True) -> QuantizedModel:
    """A mixed-precision QuantizedModel of `model` whose per-task AUC drop on `calibration` is <= `max_auc_drop`.

    objective: "latency" (fastest at `batch_size` rows per call) or "size" (fewest bytes); mode: "auto" (the
    search), "fully_quant" (every unit int8) or "dense_only" (dense units int8). The returned model's `plan` maps
    every unit to its precision; `report` holds the measured drops, gains and bytes.
    """
    if objective not in OBJECTIVES:
        raise QuantizationError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if mode not in MODES:
        raise QuantizationError(f"mode must be one of {MODES}, got {mode!r}")
    if not (isinstance(max_auc_drop, (int, float)) and 0 <= max_auc_drop < 1):
        raise QuantizationError(f"max_auc_drop must be a number in [0, 1), got {max_auc_drop!r}")
    if batch_size < 1:
        raise QuantizationError(f"batch_size must be >= 1, got {batch_size}")
    if calibration is None and mode == "auto":
        raise QuantizationError("mode='auto' needs calibration data (a labelled frame) to measure AUC drops")
    started = time.perf_counter()
    network = model.require_network()
    units = find_units(network)
    report: dict[str, Any] = {"objective": objective, "mode": mode, "max_auc_drop": float(max_auc_drop),
                              "batch_size": batch_size, "fp32_bytes": fp32_state_bytes(network)}
    search = _prepare(model, units, calibration) if calibration is not None else None
    if mode == "auto" and search is not None:
        candidates = _measure(search, units, batch_size, repeats, progress)
        plan = _greedy(search, units, candidates, objective, float(max_auc_drop), progress)
        report["units"] = _unit_report(units, plan, candidates)
        report["evaluations"] = search.evaluations
        report["history"] = search.history
    else:
        plan = uniform_plan(model, "int8" if mode == "fully_quant" else "fp32", "int8")
    quantized = QuantizedModel.from_model(model, plan, report, search.encoded if search is not None else None)
    if search is not None:
        probs = quantized.predict_array(search.encoded)
        report["auc_fp32"] = search.base_auc
        report["auc"] = task_aucs(search.labels, probs, model.tasks)
        report["auc_drop"] = search.drops(probs)
        report["within_budget"] = max(report["auc_drop"].values()) <= max_auc_drop
    report["bytes"] = network_bytes(quantized.network)
    report["bytes_ratio"] = report["bytes"] / report["fp32_bytes"]
    report["plan"] = dict(quantized.plan)
    report["seconds"] = time.perf_counter() - started
    quantized.report = report
    return quantized


def _prepare(model: MultiTaskModel, units: list[Unit], calibration: pd.DataFrame | str) -> _Search:
    """Encode the calibration data and compute the fp32 reference probabilities and AUCs."""
    encoded = model.encode(read_frame(calibration))
    labels = encoded.labels_array()
    one_class = [t for i, t in enumerate(model.tasks) if not 0 < labels[:, i].sum() < len(labels)]
    if one_class:
        raise DataError(f"calibration data: label column {one_class[0]!r} has a single class; AUC needs both "
                        "positive and negative rows for every task", column=one_class[0])
    ranges = activation_ranges(model.require_network(), encoded, units)
    search = _Search(model, Workbench(model.require_network(), units, ranges), encoded, labels, {}, np.zeros(0),
                     ranges)
    search.base_probs = search.probabilities({})
    search.base_auc = task_aucs(labels, search.base_probs, model.tasks)
    return search


def _measure(search: _Search, units: list[Unit], batch_size: int, repeats: int,
             progress: bool) -> dict[str, list[Candidate]]:
    """Every (unit, precision other than fp32) measured alone: AUC drops, bytes and CPU time saved."""
    network = search.model.require_network()
    base = convert(network, {})
    inputs, network_seconds = _captured_inputs(search.predictor({}), search.encoded, units, batch_size, repeats)
    out: dict[str, list[Candidate]] = {}
    pairs = [(u, p) for u in units for p in u.precisions if p != "fp32"]
    for unit, precision in tqdm(pairs, desc="quantize: sensitivity", disable=not progress):
        probs = search.probabilities({unit.name: precision})
        fp32_s, saved_s = _unit_seconds(network, base, unit, precision, inputs, repeats, search.ranges)
        out.setdefault(unit.name, []).append(Candidate(
            unit.name, precision, search.drops(probs), float(np.abs(probs - search.base_probs).max()),
            unit.nbytes("fp32", network) - unit.nbytes(precision, network), saved_s, fp32_s, network_seconds))
    return out


def _captured_inputs(predictor: Predictor, encoded: EncodedFrame, units: list[Unit], batch_size: int,
                     repeats: int) -> tuple[dict[str, tuple], float]:
    """({module path: positional inputs} each unit's module receives on one calibration batch of `batch_size` rows
    of `predictor`'s fp32 network, that network's CPU seconds per batch)."""
    paths = {u.module for u in units}
    captured: dict[str, tuple] = {}
    hooks = [predictor.network.get_submodule(p).register_forward_pre_hook(
        lambda _m, args, p=p: captured.setdefault(p, args)) for p in paths]
    try:
        rows = min(batch_size, len(encoded))
        batch = next(predictor.batches(encoded.select(np.arange(rows)), rows))
        with torch.inference_mode():
            predictor.logits(batch)
    finally:
        for hook in hooks:
            hook.remove()
    with torch.inference_mode():
        seconds = median_seconds({"network": lambda: predictor.logits(batch)}, repeats=repeats)["network"]
    return captured, seconds


def _unit_seconds(network: nn.Module, base: nn.Module, unit: Unit, precision: str, inputs: dict[str, tuple],
                  repeats: int, ranges: dict[str, tuple[float, float]]) -> tuple[float, float]:
    """(fp32 CPU seconds of the unit per batch, seconds saved at `precision`); (0, 0) if inference never runs it."""
    args = inputs.get(unit.module)
    if args is None:
        return 0.0, 0.0
    if unit.kind == "table":
        reference = base.get_submodule(unit.module)
        candidate = quantize_tables(network.get_submodule(unit.module), {unit.table: precision})
        fp32_fn, quant_fn = (lambda: reference(*args)), (lambda: candidate(*args))
    else:
        parent_path, _, child = unit.module.rpartition(".")
        parent = network.get_submodule(parent_path)
        layer = parent.get_submodule(child)
        relu = fused_relu(parent, child)
        candidate = quantize_dense(layer, precision, relu, ranges.get(unit.module))
        fp32_fn = (lambda: torch.relu(layer(*args))) if relu else (lambda: layer(*args))
        quant_fn = lambda: candidate(*args)  # noqa: E731
    with torch.inference_mode():
        seconds = median_seconds({"fp32": fp32_fn, "quant": quant_fn}, repeats=repeats)
    return seconds["fp32"], seconds["fp32"] - seconds["quant"]


def _greedy(search: _Search, units: list[Unit], candidates: dict[str, list[Candidate]], objective: str,
            budget: float, progress: bool) -> dict[str, str]:
    """Add units in order of gain per AUC sensitivity while every task's combined drop stays within budget."""
    eps = max(budget / 10, 1e-6)
    options: dict[str, list[Candidate]] = {}
    for unit in units:
        usable = [c for c in candidates.get(unit.name, []) if c.max_drop <= budget
                  and (objective == "size" or c.not_slower())]
        for c in candidates.get(unit.name, []):
            c.accepted = None if c in usable else False
        if usable:
            options[unit.name] = _ranked(usable, objective)

    def score(name: str) -> tuple[float, float]:
        best = options[name][0]
        return best.benefit(objective) / (best.max_drop + eps), best.bytes_saved / (best.max_drop + eps)

    plan: dict[str, str] = {}
    current = {t: 0.0 for t in search.base_auc}
    for name in tqdm(sorted(options, key=score, reverse=True), desc="quantize: greedy", disable=not progress):
        for cand in options[name]:
            trial = {**plan, name: cand.precision}
            drops = current if cand.max_abs_diff == 0.0 else search.drops(search.probabilities(trial))
            cand.accepted = max(drops.values()) <= budget
            search.history.append({"unit": name, "precision": cand.precision, "auc_drop": drops,
                                   "accepted": cand.accepted})
            if cand.accepted:
                plan, current = trial, drops
                break
    return plan


def _ranked(usable: list[Candidate], objective: str) -> list[Candidate]:
    """A unit's candidates in the order the greedy tries them: by gain; under "latency", the ones within timing noise
    of the fastest first by bytes saved (int8 over an fp16 that is no faster beyond noise)."""
    by_gain = sorted(usable, key=lambda c: (c.benefit(objective), c.bytes_saved), reverse=True)
    if objective == "size":
        return by_gain
    best = by_gain[0]
    noise = UNIT_NOISE * best.fp32_seconds + NETWORK_NOISE * best.network_seconds
    tied = [c for c in by_gain if best.benefit(objective) - c.benefit(objective) <= noise]
    return sorted(tied, key=lambda c: c.bytes_saved, reverse=True) + [c for c in by_gain if c not in tied]


def _unit_report(units: list[Unit], plan: dict[str, str], candidates: dict[str, list[Candidate]]) -> list[dict]:
    """Per unit: kind, size, chosen precision and every measured candidate."""
    out = []
    for unit in units:
        out.append({"unit": unit.name, "kind": unit.kind, "params": unit.params,
                    "precision": plan.get(unit.name, "fp32"),
                    "candidates": [_candidate_dict(c) for c in candidates.get(unit.name, [])]})
    return out


def _candidate_dict(c: Candidate) -> dict[str, Any]:
    d = asdict(c)
    d.pop("unit")
    d["max_drop"] = c.max_drop
    d["max_abs_diff"] = c.max_abs_diff if math.isfinite(c.max_abs_diff) else None
    return d
