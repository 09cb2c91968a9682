"""Sequences of task additions: every add_task method adds a dataset's held-back tasks one after another.

Scenarios: `synthetic` holds back three tasks (the third leans on two tables no pre-training task reads, so only
methods that can read the raw input or move the backbone can learn it), `adult` one (education) and
`movielens-100k` one (dislike). Per (scenario, seed) one mptrec backbone is pre-trained plainly (every method but
cnf starts from it) and one with sharpness-aware steps (`train(..., flatness=...)`, C&F's "create flatness" stage:
cnf starts from it). Each method then adds the tasks in order to its own copy; after every addition every task is
evaluated on test: the new task's AUC, each older task's AUC change since it was first learned (forgetting:
negative is worse), trainable share and seconds. `joint` retrains from scratch on every task so far at each step.
A logistic regression per task, fitted in the same run on the one-hot sparse and standardized dense features, is
the floor every new-task AUC is shown against.

python -m benchmarks.continual [--datasets synthetic adult movielens-100k] [--seeds 0 1 2] [--methods ...]
                               [--rows 60000] [--epochs N] [--threads 1] [--out reports/bench] [--name continual]

A method may carry add_task options, `pecl:fraction=1.0,ewc_lambda=0.001` (values parsed as JSON): the
variant is reported under that whole name.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

import mtrec
from benchmarks.common import add_task_grid_args, fmt, mean_std, write_results
from mtrec.train.linear import frame_baseline

METHODS = ["prompt", "tower", "task_embedding", "finetune", "child_tuning", "pecl", "cnf", "joint"]
DATASETS = ["synthetic", "adult", "movielens-100k"]
FLATNESS = {"rho": 0.05, "adaptive": False}
SYNTHETIC = {"tables": 6, "cardinality": 500, "tasks": 2, "multi_valued": 1, "dense": 2, "new_tasks": 3,
             "hidden_tables": 2, "hidden_tasks": 1, "hidden_weight": 0.8}
SMALL_SYNTHETIC_MPTREC = {"model.encoder.expert_hidden": [128, 64], "model.encoder.tower_hidden": [32],
                          "train.batch_size": 1024}


def parse_method(spec: str) -> tuple[str, dict[str, Any]]:
    """`method` or `method:key=value,key=value` -> (method, add_task options)."""
    method, _, rest = spec.partition(":")
    options = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"method {spec!r}: option {item!r} is not key=value")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return method, options


def load(dataset: str, rows: int, seed: int) -> mtrec.datasets.Dataset:
    """The scenario's data (synthetic: its spec with `rows` rows, generator seed = run seed)."""
    if dataset == "synthetic":
        return mtrec.datasets.load("synthetic", rows=rows, seed=seed, **SYNTHETIC)
    return mtrec.datasets.load(dataset)


def pretrain(data: mtrec.datasets.Dataset, dataset: str, seed: int, epochs: int | None,
             flatness: dict[str, Any] | None) -> tuple[mtrec.MultiTaskModel, float]:
    """An mptrec backbone on the pre-training tasks (sharpness-aware with `flatness`) and its training seconds."""
    overrides = SMALL_SYNTHETIC_MPTREC if dataset == "synthetic" else None
    model = mtrec.build_model("mptrec", schema=data.schema, tasks=data.tasks, dataset=dataset, overrides=overrides)
    start = time.perf_counter()
    mtrec.train(model, data.train, valid=data.valid, seed=seed, epochs=epochs, progress=False, flatness=flatness)
    return model, time.perf_counter() - start


def test_aucs(model: mtrec.MultiTaskModel, test: pd.DataFrame) -> dict[str, float]:
    """Test AUC of every task of the model."""
    return {t: m["auc"] for t, m in mtrec.evaluate(model, test).items()}


def run_sequence(base: mtrec.MultiTaskModel, data: mtrec.datasets.Dataset, spec: str, seed: int,
                 epochs: int | None) -> list[dict[str, Any]]:
    """Add the held-back tasks in order with method `spec` (parse_method); one record per addition."""
    method, options = parse_method(spec)
    model = copy.deepcopy(base)
    first = test_aucs(model, data.test)  # each task's AUC when it was first learned
    capped = {**({} if epochs is None else {"epochs": epochs}), **options}
    steps = []
    for k, task in enumerate(data.new_tasks):
        before = model.predict(data.test)[model.tasks].to_numpy()
        old_tasks = list(model.tasks)
        result = mtrec.add_task(model, task, data.train, valid=data.valid, method=method, seed=seed, progress=False,
                                **capped)
        aucs = test_aucs(model, data.test)
        after = model.predict(data.test)[old_tasks].to_numpy()
        first[task] = aucs[task]
        change = {t: aucs[t] - first[t] for t in old_tasks}
        steps.append({"step": k + 1, "task": task, "new_auc": aucs[task], "auc": aucs, "change": change,
                      "mean_change": float(np.mean(list(change.values()))), "min_change": min(change.values()),
                      "old_identical": bool(np.array_equal(after, before)),
                      "trainable_share": result.trainable_share, "trainable_params": result.trainable_params,
                      "seconds": result.seconds, "valid_auc": result.valid_auc})
    return steps


def summarize(runs: list[dict], baselines: list[dict], pretrained: list[dict]) -> tuple[dict, str]:
    """Mean/std over seeds per (dataset, method, step) and a Markdown report."""
    summary: dict = {}
    lines = ["# Sequences of task additions (mean ± std over seeds)", "",
             "`new AUC`: the added task's test AUC; `old Δ mean` / `old Δ worst`: the mean / most negative change of "
             "every older task's test AUC since it was first learned (pre-training tasks: since pre-training; "
             "negative = forgetting); `LR`: a logistic regression on the same features, same run.", ""]
    for dataset in dict.fromkeys(r["dataset"] for r in runs):
        rows = [r for r in runs if r["dataset"] == dataset]
        tasks = [s["task"] for s in rows[0]["steps"]]
        lr = {t: mean_std([b["auc"][t] for b in baselines if b["dataset"] == dataset]) for t in tasks}
        pre = [p for p in pretrained if p["dataset"] == dataset]
        summary[dataset] = {"tasks": tasks, "logistic": lr, "methods": {},
                            "pretrained": {kind: {"auc": {t: mean_std([p[kind]["auc"][t] for p in pre])
                                                          for t in pre[0][kind]["auc"]},
                                                  "seconds": mean_std([p[kind]["seconds"] for p in pre])}
                                           for kind in ("plain", "flat")}}
        plain, flat = summary[dataset]["pretrained"]["plain"], summary[dataset]["pretrained"]["flat"]
        lines += [f"## {dataset}: adding {', '.join(tasks)}", "",
                  "Pre-trained backbones: plain " + ", ".join(f"{t} {fmt(v)}" for t, v in plain["auc"].items()) +
                  f" ({plain['seconds']['mean']:.1f} s); sharpness-aware (cnf's) " +
                  ", ".join(f"{t} {fmt(v)}" for t, v in flat["auc"].items()) +
                  f" ({flat['seconds']['mean']:.1f} s, {flat['seconds']['mean'] / plain['seconds']['mean']:.2f}x).",
                  "", "| method | step | task | new AUC | LR | old Δ mean | old Δ worst | old identical | "
                  "trainable % | seconds |", "|---|---|---|---|---|---|---|---|---|---|"]
        for method in dict.fromkeys(r["method"] for r in rows):
            mine = [r for r in rows if r["method"] == method]
            entries = []
            for k, task in enumerate(tasks):
                steps = [r["steps"][k] for r in mine]
                e = {"task": task, "new_auc": mean_std([s["new_auc"] for s in steps]),
                     "mean_change": mean_std([s["mean_change"] for s in steps]),
                     "min_change": mean_std([s["min_change"] for s in steps]),
                     "change": {t: mean_std([s["change"][t] for s in steps]) for t in steps[0]["change"]},
                     "auc": {t: mean_std([s["auc"][t] for s in steps]) for t in steps[0]["auc"]},
                     "old_identical": all(s["old_identical"] for s in steps),
                     "trainable_share": mean_std([s["trainable_share"] for s in steps]),
                     "seconds": mean_std([s["seconds"] for s in steps])}
                entries.append(e)
                lines.append(f"| {method} | {k + 1} | {task} | {fmt(e['new_auc'])} | {lr[task]['mean']:.4f} | "
                             f"{e['mean_change']['mean']:+.4f} | {e['min_change']['mean']:+.4f} | "
                             f"{'yes' if e['old_identical'] else 'no'} | {100 * e['trainable_share']['mean']:.1f} | "
                             f"{e['seconds']['mean']:.1f} |")
            summary[dataset]["methods"][method] = entries
        lines.append("")
    return summary, "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Run every (dataset, seed, method) sequence and write <name>.json / <name>.md."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.continual")
    add_task_grid_args(parser, "continual", DATASETS, METHODS)
    parser.add_argument("--rows", type=int, default=60_000, help="synthetic rows (80%% train, 10%% valid, 10%% test)")
    args = parser.parse_args(argv)
    unknown = sorted({parse_method(m)[0] for m in args.methods} - set(METHODS))
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    runs, baselines, pretrained = [], [], []
    bar = tqdm(total=len(args.datasets) * len(args.seeds) * len(args.methods), desc="continual", unit="sequence")
    for dataset in args.datasets:
        for seed in args.seeds:
            data = load(dataset, args.rows, seed)
            baselines.append({"dataset": dataset, "seed": seed, "auc": frame_baseline(data.schema, data.new_tasks, data.train, data.test)})
            bases = {}
            record: dict[str, Any] = {"dataset": dataset, "seed": seed}
            for kind, flatness in (("plain", None), ("flat", FLATNESS)):
                if kind == "flat" and not any(parse_method(m)[0] == "cnf" for m in args.methods):
                    continue
                bases[kind], seconds = pretrain(data, dataset, seed, args.epochs, flatness)
                record[kind] = {"auc": test_aucs(bases[kind], data.test), "seconds": seconds}
            record.setdefault("flat", record["plain"])
            pretrained.append(record)
            for method in args.methods:
                base = bases["flat" if parse_method(method)[0] == "cnf" else "plain"]
                steps = run_sequence(base, data, method, seed, args.epochs)
                runs.append({"dataset": dataset, "seed": seed, "method": method, "steps": steps})
                bar.update()
                tqdm.write(f"{dataset:>15} seed {seed} {method:>14}: " + "; ".join(
                    f"{s['task']} {s['new_auc']:.4f} (old Δ {s['mean_change']:+.4f}, {s['seconds']:.1f} s)"
                    for s in steps))
    bar.close()
    summary, markdown = summarize(runs, baselines, pretrained)
    write_results(args.out, args.name, {
        "runs": runs, "logistic": baselines, "pretrained": pretrained, "summary": summary, "seeds": args.seeds,
        "epochs": args.epochs, "rows": args.rows, "flatness": FLATNESS, "synthetic": SYNTHETIC,
        "threads": torch.get_num_threads()}, markdown)
    return summary


if __name__ == "__main__":
    main()
