"""Inference: fp32 eager vs the Predictor at fp32 / fp16 / int8 / int4 and the automatic (SAMP) plan, side by side.

Per configuration: weight bytes (and the ratio to fp32), per-task test AUC (and the drop), and examples/s at
each batch size, measured two ways: `model` (pre-encoded batches, network + sigmoid) and `end_to_end`
(a DataFrame in, probabilities out: validation, vocabulary lookup, batching included). Calls alternate across
configurations and are timed in per-thread CPU time (medians), so other processes on a shared machine shift
every configuration alike; ratios are to fp32 eager in the same run. One thread unless --threads. The checks are
issue 16's targets; the INT8 ceiling (roofline: int8 GEMM rate at the model's shapes, fp32 eager's time outside its
dense layers) says how far INT8 can go on this machine at the largest batch.

python -m benchmarks.inference [--checkpoint DIR] [--batch-sizes 1 64 512] [--max-auc-drop 0.001] [--out reports/bench]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

import mtrec
from benchmarks.common import write_results
from benchmarks.roofline import gemm_shapes, matmul_rates
from mtrec.data.batches import EncodedFrame
from mtrec.model import task_probabilities
from mtrec.quant import QuantizedModel, quantize, uniform_plan
from mtrec.quant.measure import median_seconds
from mtrec.quant.units import find_units, fp32_state_bytes, fused_relu
from mtrec.train.metrics import task_aucs

UNIFORM = {"fp16": ("fp16", "fp16"), "int8": ("int8", "int8"), "int4": ("int4", "int8")}


def trained_model(checkpoint: str | None, data: Any, epochs: int, seed: int) -> mtrec.MultiTaskModel:
    """The checkpoint's model, or mptrec trained on adult with the recipe's settings."""
    if checkpoint:
        return mtrec.load(checkpoint)
    model = mtrec.build_model("mptrec", schema=data.schema, tasks=data.tasks, dataset="adult")
    mtrec.train(model, data.train, valid=data.valid, epochs=epochs, seed=seed, progress=False)
    return model


def configurations(model: mtrec.MultiTaskModel, valid: pd.DataFrame, max_auc_drop: float,
                   objective: str) -> dict[str, QuantizedModel | None]:
    """{name: QuantizedModel} for each precision (None = the fp32 eager model itself)."""
    configs: dict[str, QuantizedModel | None] = {"fp32 eager": None,
                                                 "fp32 predictor": QuantizedModel.from_model(model, {})}
    for name, (tables, dense) in UNIFORM.items():
        configs[name] = QuantizedModel.from_model(model, uniform_plan(model, tables, dense), calibration=valid)
    configs["auto"] = quantize(model, valid, max_auc_drop=max_auc_drop, objective=objective, progress=True)
    return configs


def _model_call(model: mtrec.MultiTaskModel, q: QuantizedModel | None, rows: EncodedFrame) -> Callable[[], object]:
    """One network call + sigmoid on pre-encoded rows (eager: no_grad as model.predict does; predictor:
    inference_mode)."""
    if q is None:
        batch = next(rows.batches(len(rows)))

        def eager() -> object:
            with torch.no_grad():
                return task_probabilities(model.logits_of(batch))
        return eager
    predictor = q.predictor
    fixed = next(predictor.batches(rows, len(rows)))

    def quantized() -> object:
        with torch.inference_mode():
            return task_probabilities(predictor.logits(fixed))
    return quantized


def throughput(model: mtrec.MultiTaskModel, configs: dict[str, QuantizedModel | None], test: pd.DataFrame,
               batch_sizes: list[int], calls: int) -> dict[str, dict[str, dict[str, float]]]:
    """{config: {"b<size>": {model_eps, end_to_end_eps, model_wall_eps, end_to_end_wall_eps}}}."""
    out: dict[str, dict[str, dict[str, float]]] = {name: {} for name in configs}
    encoded = model.encode(test, require_labels=False)
    for size in batch_sizes:
        n = max(4, min(calls, len(test) // size))
        starts = [(i * size) % (len(test) - size + 1) for i in range(n)]
        frames = [test.iloc[s:s + size] for s in starts]
        pieces = [encoded.select(np.arange(s, s + size)) for s in starts]
        fns: dict[tuple[str, str], list[Callable[[], object]]] = {}
        for name, q in configs.items():
            fns[(name, "model")] = [_model_call(model, q, p) for p in pieces]
            predict = model.predict if q is None else q.predict
            fns[(name, "end_to_end")] = [(lambda f=f, p=predict: p(f)) for f in frames]
        cpu: dict[tuple[str, str], list[float]] = {k: [] for k in fns}
        wall: dict[tuple[str, str], list[float]] = {k: [] for k in fns}
        rounds = max(calls // n, 1) * n
        for key, group in fns.items():
            for fn in group[:3]:
                fn()
        for i in tqdm(range(rounds), desc=f"inference: batch {size}", leave=False):
            for key, group in fns.items():
                fn = group[i % len(group)]
                c0, w0 = time.thread_time(), time.perf_counter()
                fn()
                cpu[key].append(time.thread_time() - c0)
                wall[key].append(time.perf_counter() - w0)
        for (name, how), samples in cpu.items():
            row = out[name].setdefault(f"b{size}", {})
            row[f"{how}_eps"] = size / float(np.median(samples))
            row[f"{how}_wall_eps"] = size / float(np.median(wall[(name, how)]))
    return out


def gemm_roofline(model: mtrec.MultiTaskModel, test: pd.DataFrame, batch_size: int) -> dict[str, Any]:
    """The INT8 ceiling at `batch_size`: the GEMM work one inference forward does (FlopCounterMode on the fp32
    network), this machine's fp32 / bf16 / int8 rates at the model's own GEMM shapes (benchmarks/roofline.py), the
    int8 GEMM floor per batch, fp32 eager's time in and outside its dense layers (each layer, with a ReLU the int8
    kernel fuses, timed on the inputs it sees, interleaved with the whole forward), and the best ratio to fp32 eager
    an INT8 network reaches when its GEMMs run at the int8 roof and everything else costs what it does in fp32."""
    network = model.require_network()
    encoded = model.encode(test.iloc[:batch_size], require_labels=False)
    batch = next(encoded.batches(batch_size))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.logits_of(batch)
    flops = float(counter.get_total_flops())
    captured: dict[str, tuple] = {}
    hooks = [network.get_submodule(u.module).register_forward_pre_hook(
        lambda _m, args, p=u.module: captured.setdefault(p, args)) for u in find_units(network) if u.kind == "dense"]
    with torch.no_grad():
        model.logits_of(batch)
    for hook in hooks:
        hook.remove()
    fns: dict[str, Callable[[], object]] = {"forward": lambda: task_probabilities(model.logits_of(batch))}
    for path, args in captured.items():
        parent_path, _, child = path.rpartition(".")
        layer, relu = network.get_submodule(path), fused_relu(network.get_submodule(parent_path), child)
        fns[path] = (lambda m=layer, a=args: torch.relu(m(*a))) if relu else (lambda m=layer, a=args: m(*a))
    with torch.no_grad():
        seconds = median_seconds(fns, repeats=50)
    dense = sum(v for k, v in seconds.items() if k != "forward")
    other = max(seconds["forward"] - dense, 0.0)
    rates = matmul_rates(gemm_shapes(network, batch_size))
    floor = flops / rates["int8"]
    return {"batch_size": batch_size, "gemm_flops_per_batch": flops, "rates": rates, "int8_floor_seconds": floor,
            "eager_seconds": seconds["forward"], "eager_dense_seconds": dense, "eager_outside_dense_seconds": other,
            "ceiling_ratio": seconds["forward"] / (other + floor)}


def accuracy(model: mtrec.MultiTaskModel, configs: dict[str, QuantizedModel | None],
             test: pd.DataFrame) -> dict[str, dict[str, float]]:
    """{config: {task: test AUC}}."""
    encoded = model.encode(test)
    labels = encoded.labels_array()
    out = {}
    for name, q in configs.items():
        probs = model.predict_array(encoded) if q is None else q.predict_array(encoded)
        out[name] = task_aucs(labels, probs, model.tasks)
    return out


def markdown(results: dict[str, Any], tasks: list[str], batch_sizes: list[int]) -> str:
    """The side-by-side table plus the done-when checks."""
    lines = ["# Inference: fp32 eager vs fp16 / int8 / int4 / automatic mixed precision", "",
             f"Model: {results['model']}; {results['threads']} thread(s); examples/s from per-thread CPU time "
             "(median per call); ratio = x fp32 eager in the same run.", ""]
    head = "| config | bytes | of fp32 | " + " | ".join(f"{t} AUC (drop)" for t in tasks) + " | " + " | ".join(
        f"b{b} model ex/s (x) | b{b} end-to-end ex/s (x)" for b in batch_sizes) + " |"
    lines += [head, "|" + "---|" * (3 + len(tasks) + 2 * len(batch_sizes))]
    base = results["configs"]["fp32 eager"]
    for name, r in results["configs"].items():
        cells = [name, f"{r['bytes']:,}", f"{r['bytes_ratio']:.1%}"]
        cells += [f"{r['auc'][t]:.4f} ({r['auc_drop'][t]:+.4f})" for t in tasks]
        for b in batch_sizes:
            key = f"b{b}"
            m, e = r["speed"][key]["model_eps"], r["speed"][key]["end_to_end_eps"]
            cells.append(f"{m:,.0f} ({m / base['speed'][key]['model_eps']:.2f}x)")
            cells.append(f"{e:,.0f} ({e / base['speed'][key]['end_to_end_eps']:.2f}x)")
        lines.append("| " + " | ".join(cells) + " |")
    auto = results["configs"]["auto"]
    lines += ["", "## Done-when (automatic plan, max_auc_drop "
              f"{results['max_auc_drop']})", ""]
    for check, ok in results["checks"].items():
        lines.append(f"- {check}: {'yes' if ok else 'NO'}")
    roof = results.get("roofline")
    if roof:
        r = roof["rates"]
        lines += ["", f"## INT8 ceiling at batch {roof['batch_size']} (roofline)", "",
                  f"- GEMM work per batch: {roof['gemm_flops_per_batch'] / 1e6:,.1f} MFLOP; this machine at the "
                  f"model's GEMM shapes: int8 {r['int8'] / 1e9:,.0f} GOP/s, bf16 {r['bf16'] / 1e9:,.0f}, fp32 "
                  f"{r['fp32'] / 1e9:,.0f} GFLOP/s",
                  f"- int8 GEMM floor {roof['int8_floor_seconds'] * 1e6:,.0f} us per batch; fp32 eager "
                  f"{roof['eager_seconds'] * 1e6:,.0f} us, of it {roof['eager_dense_seconds'] * 1e6:,.0f} us in its "
                  f"dense layers (+ ReLU) and {roof['eager_outside_dense_seconds'] * 1e6:,.0f} us outside them",
                  f"- best ratio to fp32 eager with int8 GEMMs at the roof and the rest as in fp32 eager: "
                  f"{roof['ceiling_ratio']:.2f}x"]
    lines += ["", "## Automatic plan", "", "| unit | precision |", "|---|---|"]
    lines += [f"| {unit} | {p} |" for unit, p in auto["plan"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and write reports/<out>/inference.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="an mtrec checkpoint (default: train mptrec on adult)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64, 512])
    parser.add_argument("--calls", type=int, default=200, help="timed calls per configuration and batch size")
    parser.add_argument("--max-auc-drop", type=float, default=0.001)
    parser.add_argument("--objective", default="latency", choices=["latency", "size"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="reports/bench")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = mtrec.datasets.load("adult")
    with tempfile.TemporaryDirectory() as tmp:
        model = trained_model(args.checkpoint, data, args.epochs, args.seed)
        configs = configurations(model, data.valid, args.max_auc_drop, args.objective)
        aucs = accuracy(model, configs, data.test)
        speed = throughput(model, configs, data.test, args.batch_sizes, args.calls)
        fp32_bytes = fp32_state_bytes(model.require_network())
        sizes = {}
        for name, q in configs.items():
            if q is None:
                sizes[name] = fp32_bytes
            else:
                path = mtrec.save(q, f"{tmp}/{name.replace(' ', '_')}")
                sizes[name] = q.nbytes
                sizes[name + " file"] = (path / "weights.pt").stat().st_size
    results: dict[str, Any] = {"model": f"mptrec on adult ({args.checkpoint or f'{args.epochs} epochs, seed {args.seed}'})",
                               "threads": args.threads, "max_auc_drop": args.max_auc_drop,
                               "objective": args.objective, "batch_sizes": args.batch_sizes, "configs": {}}
    for name, q in configs.items():
        results["configs"][name] = {
            "bytes": sizes[name], "bytes_ratio": sizes[name] / fp32_bytes, "file_bytes": sizes.get(name + " file"),
            "auc": aucs[name], "auc_drop": {t: aucs["fp32 eager"][t] - aucs[name][t] for t in model.tasks},
            "speed": speed[name], "plan": {} if q is None else q.plan,
            "report": None if q is None or name != "auto" else q.report}
    auto = results["configs"]["auto"]
    biggest = f"b{max(args.batch_sizes)}"
    base = results["configs"]["fp32 eager"]["speed"][biggest]
    results["checks"] = {
        f"every task's test AUC drop <= {args.max_auc_drop}": max(auto["auc_drop"].values()) <= args.max_auc_drop,
        "bytes <= 30% of fp32 (issue 16)": auto["bytes_ratio"] <= 0.30,
        f"model examples/s >= 2.5x fp32 eager at batch {max(args.batch_sizes)} (issue 16)":
            auto["speed"][biggest]["model_eps"] >= 2.5 * base["model_eps"],
        f"end-to-end examples/s >= 1.5x fp32 eager at batch {max(args.batch_sizes)}":
            auto["speed"][biggest]["end_to_end_eps"] >= 1.5 * base["end_to_end_eps"],
    }
    results["roofline"] = gemm_roofline(model, data.test, max(args.batch_sizes))
    write_results(args.out, "inference", results,
                  markdown(results, model.tasks, args.batch_sizes))
    return results


if __name__ == "__main__":
    main()
