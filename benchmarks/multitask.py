"""The six multi-task models on adult and movielens-100k over seeds: per-task test AUC (mean, std), size, time.

python -m benchmarks.multitask [--datasets adult movielens-100k] [--models ...] [--seeds 0 1 2] [--out reports/bench]
"""

from __future__ import annotations

import argparse
import time

from tqdm.auto import tqdm

import mtrec
from benchmarks.common import fmt, mean_std, write_results
from mtrec.recipe import MODELS
from mtrec.train.linear import frame_baseline

DATASETS = ["adult", "movielens-100k"]
RECIPE_NAME = {"adult": "adult", "movielens-100k": "movielens"}


def run_one(data: mtrec.datasets.Dataset, dataset: str, model_name: str, seed: int, epochs: int | None,
            max_steps: int | None = None) -> dict:
    """Train one (model, dataset, seed) and return its test metrics, parameter count and seconds."""
    model = mtrec.build_model(model_name, schema=data.schema, tasks=data.tasks, dataset=RECIPE_NAME[dataset])
    start = time.perf_counter()
    result = mtrec.train(model, data.train, valid=data.valid, seed=seed, epochs=epochs, max_steps=max_steps,
                         progress=False)
    seconds = time.perf_counter() - start
    test = mtrec.evaluate(model, data.test)
    return {"model": model_name, "dataset": dataset, "seed": seed, "test": test, "parameters": model.num_parameters(),
            "seconds": seconds, "best_epoch": result.best_epoch, "steps": result.steps,
            "examples_per_second": result.examples_per_second}


def summarize(runs: list[dict], datasets: list[str], models: list[str],
              baselines: dict[str, dict[str, float]] | None = None) -> tuple[dict, str]:
    """Aggregate runs into mean/std per (dataset, model, task) and a Markdown table with the best mean in bold,
    the logistic-regression baseline as its last row and every (model, task) below it flagged."""
    summary: dict = {}
    baselines = baselines or {}
    lines = ["# Multi-task models: test AUC (mean ± std over seeds)", ""]
    for dataset in datasets:
        rows = [r for r in runs if r["dataset"] == dataset]
        if not rows:
            continue
        tasks = list(rows[0]["test"])
        summary[dataset] = {}
        for model in models:
            mine = [r for r in rows if r["model"] == model]
            if mine:
                summary[dataset][model] = {
                    **{t: mean_std([r["test"][t]["auc"] for r in mine]) for t in tasks},
                    "parameters": mine[0]["parameters"], "seconds": mean_std([r["seconds"] for r in mine])}
        best = {t: max(v[t]["mean"] for v in summary[dataset].values()) for t in tasks}
        lines += [f"## {dataset}", "", "| model | " + " | ".join(tasks) + " | parameters | train s |",
                  "|---|" + "---|" * (len(tasks) + 2)]
        for model, v in summary[dataset].items():
            cells = [f"**{fmt(v[t])}**" if v[t]["mean"] == best[t] else fmt(v[t]) for t in tasks]
            lines.append(f"| {model} | " + " | ".join(cells) + f" | {v['parameters']:,} | {v['seconds']['mean']:.1f} |")
        lr = baselines.get(dataset)
        if lr:
            lines.append("| logistic regression (one-hot) | " + " | ".join(f"{lr[t]:.4f}" for t in tasks) + " | - | - |")
            below = [f"{m} on {t} ({v[t]['mean']:.4f} < {lr[t]:.4f})" for m, v in summary[dataset].items()
                     for t in tasks if v[t]["mean"] < lr[t]]
            lines += ["", "Below the linear baseline: " + ("; ".join(below) if below else "none")]
        lines.append("")
    return summary, "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Run the grid and write multitask.json / multitask.md."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.multitask")
    parser.add_argument("--datasets", nargs="+", default=DATASETS)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="cap epochs (default: the recipe's, with early stopping)")
    parser.add_argument("--max-steps", type=int, help="cap optimizer steps per model (the same budget of updates "
                        "whatever a recipe's batch size; early stopping still applies)")
    parser.add_argument("--out", default="reports/bench")
    args = parser.parse_args(argv)
    runs = []
    grid = [(d, m, s) for d in args.datasets for m in args.models for s in args.seeds]
    loaded = {d: mtrec.datasets.load(d) for d in args.datasets}
    for dataset, model_name, seed in tqdm(grid, desc="multitask", unit="run"):
        run = run_one(loaded[dataset], dataset, model_name, seed, args.epochs, args.max_steps)
        runs.append(run)
        tqdm.write(f"{dataset:>15} {model_name:>13} seed {seed}: " +
                   ", ".join(f"{t} {m['auc']:.4f}" for t, m in run["test"].items()) + f" ({run['seconds']:.1f} s)")
    baselines = {d: frame_baseline(loaded[d].schema, loaded[d].tasks, loaded[d].train, loaded[d].test)
                 for d in args.datasets}
    summary, markdown = summarize(runs, args.datasets, args.models, baselines)
    write_results(args.out, "multitask", {"runs": runs, "summary": summary, "baselines": baselines,
                                          "seeds": args.seeds, "epochs": args.epochs,
                                          "max_steps": args.max_steps}, markdown)
    return summary


if __name__ == "__main__":
    main()
