"""The report's sections, one function per benchmark: results dict in, document blocks (tables, text) out."""

from __future__ import annotations

from typing import Any, Callable

from benchmarks.common import mean_std
from benchmarks.document import Block, Bullets, Cell, Heading, Key, Para, Table

MeanStd = dict[str, float]


def ms(value: MeanStd, digits: int = 4, scale: float = 1.0) -> Cell:
    """'mean ± std' ranked by its mean."""
    return Cell(f"{value['mean'] * scale:.{digits}f} ± {value['std'] * scale:.{digits}f}", value["mean"] * scale)


def scaled(value: float | None, factor: float) -> float | None:
    """value * factor, None kept (a figure that was not measurable)."""
    return None if value is None else value * factor


def num(value: float | None, fmt: str = ",.0f") -> Cell:
    """A plain number ranked by itself ('–' when missing)."""
    return Cell("–") if value is None else Cell(format(value, fmt), value)


def multitask_tasks(models: dict[str, Any]) -> list[str]:
    """The task names of a multitask summary (its per-model keys other than parameters and seconds)."""
    return [k for k in next(iter(models.values())) if k not in ("parameters", "seconds")]


def multitask_table(models: dict[str, Any]) -> Table:
    """Models x (per-task test AUC, parameters, train seconds), mean ± std over seeds."""
    tasks = multitask_tasks(models)
    rows = [[m, *[ms(v[t]) for t in tasks], num(v["parameters"]), ms(v["seconds"], 1)] for m, v in models.items()]
    return Table(["model", *[f"{t} AUC" for t in tasks], "parameters", "train s"], rows,
                 [None, *["high"] * len(tasks), "low", "low"])


def multitask(res: dict[str, Any]) -> list[Block]:
    """Per-dataset model comparison and what it says about MPT-Rec."""
    blocks: list[Block] = []
    if res.get("max_steps") is not None:
        blocks.append(Para(f"Every model trained for at most {res['max_steps']} optimizer steps (the profile's cap, "
                           "with early stopping), whatever its recipe's batch size; the full profile trains each "
                           "recipe to early stopping."))
    elif res.get("epochs") is not None:
        blocks.append(Para(f"Every model trained for at most {res['epochs']} epoch(s) (the profile's cap) with its "
                           "recipe's batch size, so models whose recipes use large batches (MPT-Rec on adult: 2048) "
                           "took far fewer optimizer steps than the rest; compare models on a full run."))
    for dataset, models in res["summary"].items():
        tasks = multitask_tasks(models)
        table = multitask_table(models)
        lr = res.get("baselines", {}).get(dataset)
        if lr:
            table.rows.append(["logistic regression (one-hot)", *[num(lr[t], ".4f") for t in tasks], Cell("–"),
                               Cell("–")])
        blocks += [Heading(dataset, 3), table]
        if lr:
            below = [f"{m} on {t} ({v[t]['mean']:.4f} < {lr[t]:.4f})" for m, v in models.items() for t in tasks
                     if v[t]["mean"] < lr[t]]
            blocks.append(Key(f"{dataset}: below the logistic-regression baseline (one-hot features, same run): "
                              + ("; ".join(below) if below else "no model on any task") + "."))
        if "mptrec" in models and len(models) > 1:
            notes = []
            for t in tasks:
                best, model = max((v[t]["mean"], m) for m, v in models.items() if m != "mptrec")
                notes.append(f"{t} {models['mptrec'][t]['mean'] - best:+.4f} vs {model}")
            blocks.append(Key(f"{dataset}: MPT-Rec against the best other model per task: {'; '.join(notes)} "
                              f"(a gap smaller than the stds is within seed noise)."))
    return blocks


def new_task(res: dict[str, Any]) -> list[Block]:
    """Per-dataset method comparison: new-task AUC, old tasks after, trainable share, time, against joint."""
    blocks: list[Block] = []
    for dataset, entries in res["summary"].items():
        methods = {k: v for k, v in entries.items() if "/" in k}
        if not methods:
            continue
        old = list(next(iter(methods.values()))["old_auc"])
        rows = []
        for key, e in methods.items():
            rows.append([key, ms(e["new_auc"]), *[ms(e["old_auc"][t]) for t in old],
                         "yes" if e["old_identical"] else "no", ms(e["trainable_share"], 1, 100.0),
                         ms(e["seconds"], 1),
                         ms(e["auc_minus_joint"]) if "auc_minus_joint" in e else Cell("–"),
                         ms(e["joint_time_ratio"], 1) if "joint_time_ratio" in e else Cell("–")])
        lr = res.get("baselines", {}).get(dataset, {})
        lr = next(iter(lr.values())) if lr else None
        if lr is not None:
            rows.append(["logistic regression (one-hot)", num(lr, ".4f"), *[Cell("–") for _ in old], Cell("–"),
                         Cell("–"), Cell("–"), Cell("–"), Cell("–")])
        blocks += [Heading(dataset, 3),
                   Table(["backbone/method", "new-task AUC", *[f"{t} AUC after" for t in old], "old identical",
                          "trainable %", "seconds", "Δ AUC vs joint", "joint s / s"], rows,
                         [None, "high", *["high"] * len(old), None, "low", "low", "high", "high"])]
        if lr is not None:
            below = [f"{k} ({e['new_auc']['mean']:.4f})" for k, e in methods.items() if e["new_auc"]["mean"] < lr]
            blocks.append(Key(f"{dataset}: below the logistic-regression baseline on the new task ({lr:.4f}, "
                              f"one-hot features, same run): " + (", ".join(below) if below else "none")))
        probes = [f"{k} raw {e['probe_raw_auc']['mean']:.4f} / frozen {e['probe_frozen_auc']['mean']:.4f}"
                  for k, e in methods.items() if "probe_raw_auc" in e]
        if probes:
            blocks.append(Key(f"{dataset}: add_task's linear probes of the new label (raw input / frozen "
                              "representations, validation AUC): " + "; ".join(probes)))
        prompt = methods.get("mptrec/prompt")
        if prompt and "auc_minus_joint" in prompt:
            blocks.append(Key(
                f"{dataset}: prompt tuning on the frozen MPT-Rec backbone trains "
                f"{100 * prompt['trainable_share']['mean']:.1f}% of the parameters, reaches a new-task AUC "
                f"{prompt['auc_minus_joint']['mean']:+.4f} from full joint "
                f"retraining in 1/{prompt['joint_time_ratio']['mean']:.1f} of its wall time, and the old tasks' "
                f"predictions were {'bit-identical' if prompt['old_identical'] else 'NOT identical'} afterwards."))
    return blocks


def continual(res: dict[str, Any]) -> list[Block]:
    """Per dataset: method x addition step (new-task AUC, forgetting of the older tasks, trainable share, time)."""
    blocks: list[Block] = [Para(
        "Each method adds the held-back tasks one after another to its own copy of an mptrec backbone (cnf: one "
        "pre-trained with sharpness-aware steps). `old Δ mean` / `old Δ worst`: the mean / most negative change of "
        "the older tasks' test AUC since each was learned (negative = forgetting); `LR`: a logistic regression on "
        "the same features in the same run.")]
    for dataset, entry in res["summary"].items():
        rows = []
        for method, steps in entry["methods"].items():
            for k, e in enumerate(steps):
                rows.append([method, str(k + 1), e["task"], ms(e["new_auc"]),
                             num(entry["logistic"][e["task"]]["mean"], ".4f"), ms(e["mean_change"]),
                             ms(e["min_change"]), "yes" if e["old_identical"] else "no",
                             ms(e["trainable_share"], 1, 100.0), ms(e["seconds"], 1)])
        blocks += [Heading(f"{dataset}: adding {', '.join(entry['tasks'])}", 3),
                   Table(["method", "step", "task", "new AUC", "LR", "old Δ mean", "old Δ worst", "old identical",
                          "trainable %", "seconds"], rows,
                         [None, None, None, "high", None, "high", "high", None, "low", "low"])]
        methods = entry["methods"]
        compared = [m for m in methods if m.split(":")[0] in ("cnf", "finetune", "pecl")]
        if {m.split(":")[0] for m in compared} == {"cnf", "finetune", "pecl"}:
            last = {m: methods[m][-1] for m in compared}
            blocks.append(Key(f"{dataset}, after the last addition: " + "; ".join(
                f"{m} new {v['new_auc']['mean']:.4f}, old Δ {v['mean_change']['mean']:+.4f}"
                for m, v in last.items()) + "."))
    return blocks


def throughput(res: dict[str, Any]) -> list[Block]:
    """Implementations x batch sizes: training examples/s (mean ± std over rounds) and the ratio to plain PyTorch."""
    runs = res["results"]
    names = list(runs[0]["examples_per_second"])
    header = ["implementation", *[f"batch {r['batch_size']} ex/s" for r in runs],
              *[f"batch {r['batch_size']} x plain" for r in runs]]
    rows = []
    for name in names:
        speeds = [ms(mean_std(r["samples"][name]), 0) for r in runs]
        ratios = [num(r["examples_per_second"][name] / r["examples_per_second"]["plain"], ".2f") for r in runs]
        rows.append([name if name == "plain" else f"mtrec {name}", *speeds, *ratios])
    best = max((r["examples_per_second"][n] / r["examples_per_second"]["plain"], n, r["batch_size"])
               for r in runs for n in names if n != "plain")
    blocks: list[Block] = [
        Table(header, rows, [None, *["high"] * (2 * len(runs))]),
        Key(f"Training throughput, {res['threads']} thread(s), {res['steps']} timed steps x {res['rounds']} "
            f"alternating rounds; the ratio uses medians. Best: mtrec {best[1]} at batch {best[2]}, "
            f"{best[0]:.2f}x the plain-PyTorch MPT-Rec at the same batch.")]
    if res.get("bigtable"):
        blocks += bigtable(res["bigtable"])
    return blocks


def bigtable(big: dict[str, Any]) -> list[Block]:
    """The big-table workload: examples/s per batch against both plain baselines, then the roofline."""
    runs = big["results"]
    names = list(runs[0]["examples_per_second"])
    label = {"plain": "plain (dense Adam)", "plain_sparse": "plain SparseAdam"}
    rows = [[label.get(n, f"mtrec {n}"), *[ms(mean_std(r["samples"][n]), 0) for r in runs],
             *[num(r["examples_per_second"][n] / r["examples_per_second"]["plain_sparse"], ".2f") for r in runs]]
            for n in names]
    worst = min((max(r["ratio_to_plain_sparse"].values()), r["batch_size"]) for r in runs)
    worst_dense = min((max(r["ratio_to_plain"].values()), r["batch_size"]) for r in runs)
    blocks: list[Block] = [
        Heading("Big tables (synthetic Criteo-shaped)", 3),
        Para(f"26 sparse features on tables of 100k-1M rows ({big['table_parameters']:,} table parameters, "
             f"{big['table_mib']:,.0f} MiB fp32), dims 16-64, 3 multi-hot bags, 13 dense features; the same MPT-Rec "
             "model in plain PyTorch (nn.EmbeddingBag per feature) and in mtrec (FBGEMM fused tables), timings "
             f"alternated, each capped at {big['max_seconds']:g} s."),
        Table(["implementation", *[f"batch {r['batch_size']} ex/s" for r in runs],
               *[f"batch {r['batch_size']} x SparseAdam" for r in runs]], rows,
              [None, *["high"] * (2 * len(runs))]),
        Key(f"Big tables: mtrec's best variant is at least {worst_dense[0]:.1f}x plain PyTorch with dense Adam "
            f"(lowest at batch {worst_dense[1]}) and at least {worst[0]:.2f}x plain PyTorch with SparseAdam "
            f"(lowest at batch {worst[1]}).")]
    machine = big.get("machine")
    if machine and "roofline" in runs[0]:
        rates = machine["matmul"]
        blocks.append(Para(
            f"Roofline: this machine's matmul rate at the model's GEMM shapes is {rates['fp32'] / 1e9:,.0f} GFLOP/s "
            f"fp32, {rates['bf16'] / 1e9:,.0f} bf16 and {rates['int8'] / 1e9:,.0f} GOP/s int8; memory copy "
            f"{machine['copy_bytes_per_s'] / 1e9:,.1f} GB/s. The dense part (experts, gates, towers, losses, forward "
            "and backward, dense Adam) is measured alone on cached embedding outputs; the embedding part is the "
            "rest of the step."))
        rows = []
        for r in runs:
            roof = r["roofline"]
            for name, v in roof["variants"].items():
                rows.append([f"{r['batch_size']} {name}", num(roof["dense_flops_per_example"] / 1e6, ".2f"),
                             num(roof["embedding_bytes_per_example"] / 1e3, ".1f"),
                             num(v["dense_flops_per_s"] / 1e9, ",.1f"), num(100 * v["dense_of_bound"], ".0f"),
                             num(scaled(v["embedding_bytes_per_s"], 1e-9), ",.2f"),
                             num(scaled(v["embedding_of_bound"], 100), ".0f"),
                             num(100 * v["step_of_bound"], ".0f")])
        blocks.append(Table(["batch variant", "dense MFLOP/ex", "embedding KB/ex", "dense GFLOP/s", "dense % of roof",
                             "embedding GB/s", "embedding % of roof", "step % of bound"], rows,
                            [None, None, None, "high", "high", "high", "high", "high"]))
    return blocks


def time_to_quality(res: dict[str, Any]) -> list[Block]:
    """Per seed: the plain model's final test AUC (the target), each side's training seconds to it, their ratio."""
    rows = [[str(r["seed"]), " / ".join(f"{v:.4f}" for v in r["target_auc"].values()), num(r["plain_seconds"], ".1f"),
             num(r["mtrec_seconds"], ".1f"), num(r["speedup"], ".1f")] for r in res["runs"]]
    blocks: list[Block] = [Table(["seed", "target test AUC", "plain s", "mtrec s", "plain s / mtrec s"], rows,
                                 [None, None, "low", "low", "high"])]
    summary = res["summary"]
    if summary["speedup"]:
        blocks.append(Key(
            f"Time to quality on adult: mtrec's recipe reached on both tasks the test AUC of the plain-PyTorch MPT-Rec "
            f"after {res['plain_epochs']} epochs at the reference settings (batch 256, lr 1e-3, dim 4) "
            f"{summary['speedup']['mean']:.1f}x sooner in training time ({summary['reached']} of {summary['seeds']} "
            "seed(s) reached it)."))
    else:
        blocks.append(Key("Time to quality on adult: mtrec's recipe did NOT reach the plain model's test AUC."))
    return blocks


def inference(res: dict[str, Any]) -> list[Block]:
    """Precisions x (bytes, AUC per task, model and end-to-end examples/s per batch size)."""
    configs = res["configs"]
    tasks = list(configs["fp32 eager"]["auc"])
    sizes = [f"b{b}" for b in res["batch_sizes"]]
    rows = []
    for name, c in configs.items():
        rows.append([name, num(100 * c["bytes_ratio"], ".1f"), *[num(c["auc"][t], ".4f") for t in tasks],
                     *[num(c["speed"][s]["model_eps"]) for s in sizes],
                     *[num(c["speed"][s]["end_to_end_eps"]) for s in sizes]])
    blocks: list[Block] = [
        Table(["precision", "bytes % of fp32", *[f"{t} AUC" for t in tasks],
               *[f"{s} model ex/s" for s in sizes], *[f"{s} end-to-end ex/s" for s in sizes]], rows,
              [None, "low", *["high"] * len(tasks), *["high"] * (2 * len(sizes))])]
    int8 = configs.get("int8")
    if int8:
        big = sizes[-1]
        speed = int8["speed"][big]["model_eps"] / configs["fp32 eager"]["speed"][big]["model_eps"]
        changes = ", ".join(f"{t} {-int8['auc_drop'][t]:+.4f}" for t in tasks)
        blocks.append(Key(
            f"INT8 everywhere keeps {100 * int8['bytes_ratio']:.1f}% of the fp32 bytes, runs the network at "
            f"{speed:.2f}x fp32 eager at batch {big[1:]} ({res['threads']} thread(s), per-thread CPU time) and "
            f"changes test AUC by {changes}."))
    roof = res.get("roofline")
    if roof:
        blocks.append(Key(
            f"INT8 ceiling at batch {roof['batch_size']}: {roof['gemm_flops_per_batch'] / 1e6:.0f} MFLOP of GEMMs per "
            f"batch at this machine's int8 rate ({roof['rates']['int8'] / 1e9:.0f} GOP/s at the model's shapes) take "
            f"{roof['int8_floor_seconds'] * 1e6:.0f} us; fp32 eager spends {roof['eager_outside_dense_seconds'] * 1e6:.0f}"
            f" of its {roof['eager_seconds'] * 1e6:.0f} us outside its dense layers, so INT8 GEMMs at the roof give at "
            f"most {roof['ceiling_ratio']:.2f}x fp32 eager."))
    blocks.append(Bullets([f"{check}: {'yes' if ok else 'NO'}" for check, ok in res["checks"].items()]))
    return blocks


def scaling(res: dict[str, Any]) -> list[Block]:
    """(workers, sharding) x examples/s, step time and per-worker memory."""
    cfg = res["config"]
    rows = [[f"{r['workers']} x {r['sharding'] if r['workers'] > 1 else 'local'}", num(r["examples_per_second"]),
             num(r["step_ms"]), num(max(r["peak_rss_mib"])), num(max(r["table_mib"]))] for r in res["results"]]
    one = next((r for r in res["results"] if r["workers"] == 1), None)
    blocks: list[Block] = [
        Para(f"{cfg['tables']} tables x {cfg['rows']:,} rows x {cfg['dim']}, global batch {cfg['batch_size']}, "
             f"{cfg['steps']} timed steps, {cfg['threads']} thread(s) per worker, gloo on CPU."),
        Table(["workers x sharding", "examples/s", "step ms", "peak RSS per worker MiB", "tables per worker MiB"],
              rows, [None, "high", "low", "low", "low"])]
    if one:
        speedups = [f"{r['sharding']} {r['examples_per_second'] / one['examples_per_second']:.2f}x"
                    for r in res["results"] if r["workers"] > 1]
        blocks.append(Key("Distributed training, 2 workers vs 1: " + ", ".join(speedups) + ". Model-parallel "
                          "types split the table bytes per worker; when the workers share a few CPU cores (with each "
                          "other or with other jobs) the speedup is bounded by the cores, not by the sharding."))
    return blocks


def serve_load(res: dict[str, Any]) -> list[Block]:
    """The load test's one row: rates, latency percentiles, errors."""
    row = [num(res["requests_per_second"], ",.1f"), num(res["rows_per_second"], ",.1f"), num(res["p50_ms"], ".1f"),
           num(res["p95_ms"], ".1f"), num(res["p99_ms"], ".1f"), num(res["requests"]), num(res["errors"])]
    return [Table(["requests/s", "rows/s", "p50 ms", "p95 ms", "p99 ms", "requests", "errors"], [row]),
            Key(f"Serving: {res['requests_per_second']:,.1f} requests/s at p99 {res['p99_ms']:.1f} ms with "
                f"{res['errors']} errors; {res['clients']} concurrent clients on loopback, "
                f"{res['rows_per_request']} row(s) per request, {res['replicas']} replica(s), "
                f"{res['duration_s']:.0f} s; errors are non-200 answers or failed connections.")]



def batch_predict(res: dict[str, Any]) -> list[Block]:
    """Per input size: (workers, precision) x rows/s, ratio to 1 worker fp32, peak memory, output checks."""
    blocks: list[Block] = []
    for size in res["sizes"]:
        rows = [[f"{r['workers_requested']} x {r['precision']}", num(r["rows_per_s"]),
                 num(r.get("scoring_rows_per_s")), num(r["speedup"], ".2f"), num(r["seconds"], ".1f"),
                 num(r.get("run_peak_pss_mib")),
                 "yes" if r["check"]["rows_match"] else "NO", Cell(f"{r['check']['max_abs_diff']:.1e}")]
                for r in size["runs"]]
        blocks += [Heading(f"{size['rows']:,} rows", 3),
                   Table(["workers x precision", "rows/s (whole run)", "scoring rows/s", "x 1 worker fp32",
                          "seconds", "whole-run peak MiB", "all rows scored", "max diff vs in-process"], rows,
                         [None, "high", "high", "high", "low", "low", None, None])]
        best = max(size["runs"], key=lambda r: r["rows_per_s"])
        blocks.append(Key(f"Batch scoring {size['rows']:,} synthetic rows: best {best['rows_per_s']:,.0f} rows/s with "
                          f"{best['workers_requested']} worker(s) at {best['precision']} "
                          f"({best['speedup']:.2f}x one fp32 worker, as the script reports it)."))
    return blocks


def sequences(res: dict[str, Any]) -> list[Block]:
    """Sequence variants x (per-task test AUC and GAUC, seconds per epoch) and the gain of the best over the bag."""
    summary = res["summary"]
    if not summary:
        return [Para("No runs.")]
    tasks = list(next(iter(summary.values()))["tasks"])
    rows = [[v, *[c for t in tasks for c in (ms(s["tasks"][t]["auc"]), ms(s["tasks"][t]["gauc"]))],
             ms(s["seconds_per_epoch"], 1)] for v, s in summary.items()]
    if res.get("baseline"):
        rows.append(["logistic regression", *[c for t in tasks for c in (num(res["baseline"][t], ".4f"), "–")], "–"])
    blocks: list[Block] = [Table(["variant", *[f"{t} {m}" for t in tasks for m in ("AUC", "GAUC")], "s/epoch"], rows,
                                 [None, *["high"] * (2 * len(tasks)), "low"])]
    if "bag" in summary and len(summary) > 1:
        gains = {v: min(s["tasks"][t]["auc"]["mean"] - summary["bag"]["tasks"][t]["auc"]["mean"] for t in tasks)
                 for v, s in summary.items() if v != "bag"}
        best = max(gains, key=gains.get)
        blocks.append(Key(f"Best sequence variant {best}: {gains[best]:+.4f} AUC over the pooled bag on its weaker "
                          f"task (goal: +0.01 on every task)."))
    return blocks


def ingest(res: dict[str, Any]) -> list[Block]:
    """Per size: variant x mode, whole-job peak memory, examples/s and its ratio to in-memory, test AUC."""
    rows = [[f"{size['rows']:,}", f"{size.get('cardinality', res['cardinality']):,}", r["variant"], r["mode"],
             num(r["peak_pss_mib"]), num(r["examples_per_s"]), num(r.get("ratio"), ".2f"),
             num(r.get("x_first_size"), ".2f"), num(r["mean_test_auc"], ".4f")]
            for size in res["sizes"] for r in size["runs"]]
    return [Table(["rows", "ids per table", "variant", "mode", "whole-job peak PSS MiB", "examples/s", "x in-memory",
                   "x first size", "test mean AUC"], rows,
                  [None, None, None, None, "low", "high", "high", None, "high"]),
            Key(f"One epoch from Parquet (batch {res['batch_size']}): the whole job's peak memory per size, streamed "
                "vs the in-memory frame where it fits; x first size: examples/s over the first size's (flat in "
                "table size when sizes differ in ids).")]


def generic(res: dict[str, Any]) -> list[Block]:
    """Any other benchmark: its top-level numbers and strings as a two-column table."""
    rows = [[key, num(v, ",.4g") if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)]
            for key, v in res.items() if isinstance(v, (int, float, str, bool))]
    return [Table(["quantity", "value"], rows, [None, None])] if rows else [Para("No scalar results.")]


SECTIONS: dict[str, Callable[[dict[str, Any]], list[Block]]] = {
    "multitask": multitask, "new_task": new_task, "continual": continual, "throughput": throughput,
    "time_to_quality": time_to_quality, "inference": inference, "scaling": scaling, "serve_load": serve_load, "batch_predict": batch_predict,
    "sequences": sequences, "ingest": ingest,
}
