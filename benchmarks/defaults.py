"""The default recipe for a user's own data (mtrec/recipe_defaults.py) beside the linear baseline, in one run: per
dataset and task, MPT-Rec's test AUC with the recipe derived from the training rows, with the shipped recipe where
one exists (adult, movielens-100k), and a logistic regression on one-hot features; then the new task added with
prompt tuning and its two linear probes (raw input, frozen representations).

python -m benchmarks.defaults [--datasets adult movielens-100k synthetic-20k synthetic-200k] [--model mptrec]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from tqdm.auto import tqdm

import mtrec
from benchmarks.common import write_results
from mtrec.data.profile import DataProfile
from mtrec.recipe import recipe_path
from mtrec.recipe_defaults import MAX_WIDTH, default_recipe, describe
from mtrec.train.linear import frame_baseline

DATASETS = {"adult": ("adult", {}), "movielens-100k": ("movielens-100k", {}),
            "synthetic-20k": ("synthetic", {"rows": 20_000}), "synthetic-200k": ("synthetic", {"rows": 200_000}),
            "synthetic-2m": ("synthetic", {"rows": 2_000_000})}


def train_one(data: Any, model_name: str, recipe: Any, seed: int) -> tuple[mtrec.MultiTaskModel, dict[str, Any]]:
    """Train with `recipe` (early stopping on valid) and return the model and its test AUCs, time and epochs."""
    model = mtrec.build_model(model_name, schema=data.schema, tasks=data.tasks, recipe=recipe)
    start = time.perf_counter()
    result = mtrec.train(model, data.train, valid=data.valid, seed=seed, progress=False)
    seconds = time.perf_counter() - start
    test = mtrec.evaluate(model, data.test)
    return model, {"test": {t: m["auc"] for t, m in test.items()}, "seconds": seconds, "best_epoch": result.best_epoch,
                   "steps": result.steps, "batch_size": recipe.train.batch_size}


def run_dataset(key: str, model_name: str, seed: int, with_shipped: bool = True,
                max_width: int = MAX_WIDTH) -> dict[str, Any]:
    """Default recipe, shipped recipe (if any and asked for), linear baseline and the new task's probes on one
    dataset."""
    name, kwargs = DATASETS[key]
    data = mtrec.datasets.load(name, **kwargs)
    profile = DataProfile.of(data.train, data.schema)
    derived = default_recipe(model_name, data.schema, profile, max_width=max_width)
    tqdm.write(f"{key}: {describe(derived, profile, max_width)}")
    out: dict[str, Any] = {"rows": profile.rows, "recipe": derived.to_dict(), "max_width": max_width}
    start = time.perf_counter()
    out["baseline"] = frame_baseline(data.schema, [*data.tasks, *data.new_tasks], data.train, data.test, seed)
    out["baseline_seconds"] = time.perf_counter() - start
    model, out["default"] = train_one(data, model_name, derived, seed)
    shipped = recipe_path(model_name, name) if with_shipped else None
    if shipped is not None:
        model, out["shipped"] = train_one(data, model_name, mtrec.recipe.load_recipe(shipped), seed)
    task = data.new_tasks[0]
    added = mtrec.add_task(model, task, data.train, valid=data.valid, seed=seed, progress=False)
    out["new_task"] = {"task": task, "backbone": "shipped" if shipped is not None else "default",
                       "test_auc": mtrec.evaluate(model, data.test)[task]["auc"], "probe_raw_auc": added.probe_raw_auc,
                       "probe_frozen_auc": added.probe_frozen_auc, "probe_seconds": added.details["probe_seconds"],
                       "seconds": added.seconds}
    return out


def markdown(results: dict[str, dict[str, Any]], cpu: str) -> str:
    """Per dataset and task: default / shipped / linear AUC, a flag where a model is below the baseline."""
    lines = ["# Default recipe vs linear baseline (test AUC, one seed)", "", f"CPU: {cpu}", "",
             "| dataset | task | default recipe | shipped recipe | logistic regression | below baseline |",
             "|---|---|---|---|---|---|"]
    for key, r in results.items():
        for task, lr in r["baseline"].items():
            if task == r["new_task"]["task"]:
                mine, shipped = r["new_task"]["test_auc"], None
                label = f"{task} (added, prompt on the {r['new_task']['backbone']} backbone)"
            else:
                mine, shipped, label = r["default"]["test"][task], r.get("shipped", {}).get("test", {}).get(task), task
            below = [n for n, v in (("default", mine), ("shipped", shipped)) if v is not None and v < lr]
            lines.append(f"| {key} | {label} | {mine:.4f} | {'-' if shipped is None else f'{shipped:.4f}'} | "
                         f"{lr:.4f} | {'**' + ', '.join(below) + '**' if below else 'no'} |")
    lines += ["", "| dataset | new task | probe raw input | probe frozen | probe s | rows | batch | default train s |",
              "|---|---|---|---|---|---|---|---|"]
    for key, r in results.items():
        n = r["new_task"]
        lines.append(f"| {key} | {n['task']} | {n['probe_raw_auc']:.4f} | {n['probe_frozen_auc']:.4f} | "
                     f"{n['probe_seconds']:.2f} | {r['rows']:,} | {r['default']['batch_size']} | "
                     f"{r['default']['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every dataset and write defaults.json / defaults.md."""
    from benchmarks.common import environment

    parser = argparse.ArgumentParser(prog="python -m benchmarks.defaults")
    parser.add_argument("--datasets", nargs="+", default=["adult", "movielens-100k", "synthetic-20k", "synthetic-200k"],
                        choices=list(DATASETS))
    parser.add_argument("--model", default="mptrec")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="reports/bench")
    parser.add_argument("--shipped", action=argparse.BooleanOptionalAction, default=True,
                        help="also train the dataset's shipped recipe where one exists")
    parser.add_argument("--max-width", type=int, default=MAX_WIDTH,
                        help="cap on the derived tables' width (the rule's own cap by default)")
    parser.add_argument("--name", default="defaults", help="result files: <out>/<name>.json and .md")
    args = parser.parse_args(argv)
    results = {key: run_dataset(key, args.model, args.seed, args.shipped, args.max_width) for key in tqdm(args.datasets, desc="defaults")}
    text = markdown(results, environment()["cpu"])
    write_results(args.out, args.name, {"results": results, "model": args.model,
                                         "seed": args.seed}, text)
    return results


if __name__ == "__main__":
    main()
