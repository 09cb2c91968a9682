"""Adding a task: every add_task method on mptrec (and `prompt` on the other backbones), per dataset and seed.

Per run: the new task's test AUC, the old tasks' test AUC after the addition (and whether their predictions
stayed bit-identical), trainable parameters as a share of the model, wall seconds, and the ratios to `joint`
(retraining the whole model from scratch on old + new tasks) of the same dataset and seed, measured side by side.
Per dataset: the logistic-regression baseline of `mtrec.evaluate(..., baseline=...)` on the new task (a method
below it is flagged) and add_task's two linear probes (raw input vs frozen representations).

python -m benchmarks.new_task [--datasets adult movielens-100k] [--seeds 0 1 2] [--methods ...]
                              [--backbones ...] [--threads 1] [--out reports/bench] [--name new_task]
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

import mtrec
from benchmarks.common import add_task_grid_args, fmt, mean_std, write_results
from mtrec.tasks import METHODS
from mtrec.train.linear import frame_baseline

DATASETS = ["adult", "movielens-100k"]
OTHER_BACKBONES = ["mmoe", "ple", "stem", "shared_bottom", "single"]


def pretrain(data: mtrec.datasets.Dataset, dataset: str, backbone: str, seed: int,
             epochs: int | None = None) -> tuple[mtrec.MultiTaskModel, dict]:
    """Train a backbone on the old tasks with its recipe (epochs capped if given); return it, test metrics, seconds."""
    model = mtrec.build_model(backbone, schema=data.schema, tasks=data.tasks, dataset=dataset)
    start = time.perf_counter()
    mtrec.train(model, data.train, valid=data.valid, seed=seed, epochs=epochs, progress=False)
    seconds = time.perf_counter() - start
    return model, {"test": mtrec.evaluate(model, data.test), "seconds": seconds, "parameters": model.num_parameters()}


def add_one(base: mtrec.MultiTaskModel, data: mtrec.datasets.Dataset, method: str, seed: int,
            epochs: int | None = None) -> dict[str, Any]:
    """Add the dataset's new task to a copy of `base` with `method` (epochs capped if given); measure it on test."""
    model = copy.deepcopy(base)
    old = base.predict(data.test).to_numpy()
    task = data.new_tasks[0]
    capped = {} if epochs is None else {"epochs": epochs}
    result = mtrec.add_task(model, task, data.train, valid=data.valid, method=method, seed=seed, progress=False,
                            **capped)
    test = mtrec.evaluate(model, data.test)
    after = model.predict(data.test)[base.tasks].to_numpy()
    return {"method": method, "seed": seed, "new_auc": test[task]["auc"],
            "old_auc": {t: test[t]["auc"] for t in base.tasks}, "old_identical": bool(np.array_equal(after, old)),
            "trainable_params": result.trainable_params, "total_params": result.total_params,
            "trainable_share": result.trainable_share, "seconds": result.seconds, "valid_auc": result.valid_auc,
            "best_epoch": result.best_epoch, "epochs_run": len(result.history), "history": result.history,
            "details": result.details, "probe_raw_auc": result.probe_raw_auc, "probe_frozen_auc": result.probe_frozen_auc}


def summarize(runs: list[dict], pretrained: list[dict], datasets: list[str],
              baselines: dict[str, dict[str, float]] | None = None) -> tuple[dict, str]:
    """Mean/std per (dataset, backbone, method), ratios to joint, the linear baseline and probes, and a Markdown
    report flagging every method below the baseline."""
    baselines = baselines or {}
    summary: dict = {}
    lines = ["# Adding a task: new-task and old-task test AUC (mean ± std over seeds)", "",
             "`old identical`: the old tasks' test predictions were bit-identical after the addition in every seed.",
             "`joint s / s`: wall time of `joint` (full retraining on old + new tasks, same backbone and seed) "
             "divided by the method's; `Δ vs joint`: new-task AUC minus joint's.", ""]
    for dataset in datasets:
        rows = [r for r in runs if r["dataset"] == dataset]
        if not rows:
            continue
        old_tasks = list(rows[0]["old_auc"])
        summary[dataset] = {}
        lines += [f"## {dataset} (new task: {rows[0]['task']})", "",
                  "| backbone | method | new-task AUC | " + " | ".join(f"{t} AUC after" for t in old_tasks) +
                  " | old identical | trainable % | seconds | joint s / s | Δ vs joint |",
                  "|---|---|---|" + "---|" * len(old_tasks) + "---|---|---|---|---|"]
        for p in [p for p in pretrained if p["dataset"] == dataset]:
            summary[dataset].setdefault("pretrained", {}).setdefault(p["backbone"], []).append(p)
        for backbone, reference in summary[dataset].get("pretrained", {}).items():
            cells = [fmt(mean_std([r["test"][t]["auc"] for r in reference])) for t in old_tasks]
            seconds = mean_std([r["seconds"] for r in reference])
            lines.append(f"| {backbone} | (pre-trained, old tasks only) | – | " + " | ".join(cells) +
                         f" | – | – | {seconds['mean']:.1f} | – | – |")
        keys = list(dict.fromkeys((r["backbone"], r["method"]) for r in rows))
        for backbone, method in keys:
            mine = [r for r in rows if r["backbone"] == backbone and r["method"] == method]
            joint = {r["seed"]: r for r in rows if r["backbone"] == backbone and r["method"] == "joint"}
            entry = {"new_auc": mean_std([r["new_auc"] for r in mine]),
                     "old_auc": {t: mean_std([r["old_auc"][t] for r in mine]) for t in old_tasks},
                     "old_identical": all(r["old_identical"] for r in mine),
                     "trainable_share": mean_std([r["trainable_share"] for r in mine]),
                     "trainable_params": mine[0]["trainable_params"], "total_params": mine[0]["total_params"],
                     "seconds": mean_std([r["seconds"] for r in mine])}
            probed = [r for r in mine if r.get("probe_raw_auc") is not None]
            if probed:
                entry["probe_raw_auc"] = mean_std([r["probe_raw_auc"] for r in probed])
                entry["probe_frozen_auc"] = mean_std([r["probe_frozen_auc"] for r in probed])
            lr = baselines.get(dataset, {}).get(rows[0]["task"])
            if lr is not None:
                entry["baseline_auc"], entry["below_baseline"] = lr, entry["new_auc"]["mean"] < lr
            paired = [(joint[r["seed"]], r) for r in mine if r["seed"] in joint]
            if paired:
                entry["joint_time_ratio"] = mean_std([j["seconds"] / r["seconds"] for j, r in paired])
                entry["auc_minus_joint"] = mean_std([r["new_auc"] - j["new_auc"] for j, r in paired])
            summary[dataset][f"{backbone}/{method}"] = entry
            ratio = f"{entry['joint_time_ratio']['mean']:.1f}x" if "joint_time_ratio" in entry else "–"
            delta = f"{entry['auc_minus_joint']['mean']:+.4f}" if "auc_minus_joint" in entry else "–"
            cells = [fmt(entry["old_auc"][t]) for t in old_tasks]
            lines.append(f"| {backbone} | {method} | {fmt(entry['new_auc'])} | " + " | ".join(cells) +
                         f" | {'yes' if entry['old_identical'] else 'no'} | "
                         f"{100 * entry['trainable_share']['mean']:.1f} | {entry['seconds']['mean']:.1f} | "
                         f"{ratio} | {delta} |")
        lr = baselines.get(dataset, {}).get(rows[0]["task"])
        methods = {k: v for k, v in summary[dataset].items() if k != "pretrained"}
        if lr is not None:
            lines.append(f"| – | logistic regression (one-hot) | {lr:.4f} | " + " | ".join("–" for _ in old_tasks) +
                         " | – | – | – | – | – |")
            below = [f"{k} ({v['new_auc']['mean']:.4f} < {lr:.4f})" for k, v in methods.items() if v["below_baseline"]]
            lines += ["", f"Below the linear baseline on {rows[0]['task']}: " + ("; ".join(below) if below else "none")]
        probes = [f"{k}: raw {fmt(v['probe_raw_auc'])}, frozen {fmt(v['probe_frozen_auc'])}"
                  for k, v in methods.items() if "probe_raw_auc" in v]
        if probes:
            lines += ["", "add_task's linear probes (2,048 rows, validation AUC): " + "; ".join(probes)]
        lines.append("")
    return summary, "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Run the grid and write <name>.json / <name>.md."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.new_task")
    add_task_grid_args(parser, "new_task", DATASETS, list(METHODS))
    parser.add_argument("--backbones", nargs="*", default=OTHER_BACKBONES,
                        help="other backbones run with prompt (none: give the flag alone)")
    parser.add_argument("--backbone-joint", action="store_true", help="also run joint on the other backbones")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    plan = [(d, "mptrec", m) for d in args.datasets for m in args.methods]
    plan += [(d, b, m) for d in args.datasets for b in args.backbones
             for m in (["prompt", "joint"] if args.backbone_joint else ["prompt"])]
    runs, pretrained, baselines = [], [], {}
    bar = tqdm(total=len(plan) * len(args.seeds), desc="new_task", unit="run")
    for dataset in args.datasets:
        data = mtrec.datasets.load(dataset)
        baselines[dataset] = frame_baseline(data.schema, data.new_tasks[:1], data.train, data.test)
        for backbone in dict.fromkeys(b for d, b, _ in plan if d == dataset):
            for seed in args.seeds:
                base, info = pretrain(data, dataset, backbone, seed, args.epochs)
                pretrained.append({"dataset": dataset, "backbone": backbone, "seed": seed, **info})
                for method in [m for d, b, m in plan if d == dataset and b == backbone]:
                    run = {"dataset": dataset, "backbone": backbone, "task": data.new_tasks[0],
                           **add_one(base, data, method, seed, args.epochs)}
                    runs.append(run)
                    bar.update()
                    tqdm.write(f"{dataset:>15} {backbone:>13} {method:>12} seed {seed}: new {run['new_auc']:.4f}, "
                               + ", ".join(f"{t} {a:.4f}" for t, a in run["old_auc"].items())
                               + f", {100 * run['trainable_share']:.1f}% trained, {run['seconds']:.1f} s")
    bar.close()
    summary, markdown = summarize(runs, pretrained, args.datasets, baselines)
    write_results(args.out, args.name, {"runs": runs, "pretrained": pretrained,
                                         "summary": summary, "baselines": baselines, "seeds": args.seeds,
                                         "epochs": args.epochs,
                                         "threads": torch.get_num_threads()}, markdown)
    return summary


if __name__ == "__main__":
    main()
