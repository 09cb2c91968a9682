"""Behaviour sequences on MovieLens-100k like / love: the pooled history bag against a sequence encoder trained from
scratch, a pretrained (SASRec, training split only) encoder frozen and fine-tuned, each pooled by last / mean /
target attention; test AUC, GAUC and seconds per epoch over seeds, MPT-Rec backbone.

python -m benchmarks.sequences [--seeds 0 1 2] [--variants bag scratch-last ...] [--epochs N] [--encoder DIR]
                               [--max-len 50] [--out reports/bench] [--name sequences]
python -m benchmarks.sequences --merge reports/bench/sequences-a.json reports/bench/sequences-b.json
Without --encoder (or when DIR holds none) the encoder is pretrained first into OUT/movielens-encoder. The grid can
run in chunks (--variants / --seeds, each written to its own --name) and --merge puts their runs into one table.
A logistic regression on the bag's one-hot features (the baseline behind `evaluate(..., baseline=...)`, fitted when
the bag is among the variants) is the table's last row.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

import mtrec
from benchmarks.common import fmt, mean_std, write_results
from mtrec.recipe import Recipe, load_recipe
from mtrec.train.linear import frame_baseline

POOLINGS = ["last", "mean", "target_attention"]
KINDS = ["scratch", "frozen", "finetuned"]
VARIANTS = ["bag", *[f"{k}-{p}" for k in KINDS for p in POOLINGS]]
MODEL = "mptrec"


def recipe_of(variant: str, encoder: Path) -> Recipe | None:
    """The `mptrec_movielens_seq` recipe with the variant's pooling and encoder (None: the bag's own recipe)."""
    if variant == "bag":
        return None
    kind, pooling = variant.split("-", 1)
    recipe = load_recipe(MODEL, dataset="movielens_seq")
    for part in recipe.model["embedding"]["parts"]:
        if part["name"] == "sequence":
            part["pooling"] = pooling
            if kind != "scratch":
                part.update({"pretrained": str(encoder), "freeze": kind == "frozen"})
    return recipe


def run_one(data: dict[str, Any], variant: str, seed: int, epochs: int | None, encoder: Path) -> dict[str, Any]:
    """Train one (variant, seed) on the time split; test metrics, seconds per epoch, parameters."""
    ds = data["bag" if variant == "bag" else "seq"]
    recipe = recipe_of(variant, encoder)
    model = mtrec.build_model(MODEL, schema=ds.schema, tasks=ds.tasks, dataset="movielens", recipe=recipe)
    start = time.perf_counter()
    result = mtrec.train(model, ds.train, valid=ds.valid, seed=seed, epochs=epochs, progress=False)
    seconds = time.perf_counter() - start
    per_epoch = [r["seconds"] for r in result.history if "seconds" in r]
    return {"variant": variant, "seed": seed, "test": mtrec.evaluate(model, ds.test), "seconds": seconds,
            "seconds_per_epoch": float(np.mean(per_epoch)) if per_epoch else seconds,
            "best_epoch": result.best_epoch, "epochs_run": len(result.history),
            "parameters": model.num_parameters(), "trainable": model.num_parameters(trainable_only=True),
            "load_average_1m": os.getloadavg()[0]}


def summarize(runs: list[dict[str, Any]], variants: list[str],
              baseline: dict[str, float] | None = None) -> tuple[dict[str, Any], str]:
    """Mean ± std per variant and task (AUC, GAUC), seconds per epoch, each variant's AUC gain over the bag, and the
    logistic-regression baseline's AUC as the last row."""
    summary: dict[str, Any] = {}
    for v in variants:
        mine = [r for r in runs if r["variant"] == v]
        if not mine:
            continue
        tasks = list(mine[0]["test"])
        summary[v] = {"tasks": {t: {"auc": mean_std([r["test"][t]["auc"] for r in mine]),
                                    "gauc": mean_std([r["test"][t]["gauc"] for r in mine]),
                                    "calibration": mean_std([r["test"][t]["calibration"] for r in mine])}
                                for t in tasks},
                      "seconds_per_epoch": mean_std([r["seconds_per_epoch"] for r in mine]),
                      "epochs_run": mean_std([r["epochs_run"] for r in mine]),
                      "parameters": mine[0]["parameters"], "trainable": mine[0]["trainable"], "seeds": len(mine)}
    bag = summary.get("bag")
    lines = ["# Behaviour sequences: MovieLens-100k, MPT-Rec, test AUC / GAUC (mean ± std over seeds)", ""]
    if not summary:
        return summary, "\n".join(lines + ["No runs."])
    tasks = list(next(iter(summary.values()))["tasks"])
    lines += ["| variant | " + " | ".join(f"{t} AUC | {t} GAUC" for t in tasks) + " | AUC gain vs bag | s/epoch | "
              "trainable / params |", "|---|" + "---|" * (2 * len(tasks) + 3)]
    for v, s in summary.items():
        gain = "–" if bag is None else " / ".join(
            f"{s['tasks'][t]['auc']['mean'] - bag['tasks'][t]['auc']['mean']:+.4f}" for t in tasks)
        s["auc_gain_vs_bag"] = None if bag is None else {
            t: s["tasks"][t]["auc"]["mean"] - bag["tasks"][t]["auc"]["mean"] for t in tasks}
        cells = " | ".join(f"{fmt(s['tasks'][t]['auc'])} | {fmt(s['tasks'][t]['gauc'])}" for t in tasks)
        lines.append(f"| {v} | {cells} | {gain} | {s['seconds_per_epoch']['mean']:.1f} | "
                     f"{s['trainable']:,} / {s['parameters']:,} |")
    if baseline:
        gain = "–" if bag is None else " / ".join(f"{baseline[t] - bag['tasks'][t]['auc']['mean']:+.4f}" for t in tasks)
        cells = " | ".join(f"{baseline[t]:.4f} | –" for t in tasks)
        lines.append(f"| logistic regression (bag features, one-hot) | {cells} | {gain} | – | – |")
        below = [f"{v} {t}" for v, s in summary.items() for t in tasks if s["tasks"][t]["auc"]["mean"] < baseline[t]]
        lines += ["", "Below the linear baseline: " + ("; ".join(below) if below else "none")]
    return summary, "\n".join(lines + [""])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the grid and write sequences.json / sequences.md."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sequences")
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="cap epochs (default: the recipe's, with early stopping)")
    parser.add_argument("--encoder", help="a pretrained encoder directory (default: pretrain into OUT)")
    parser.add_argument("--pretrain-epochs", type=int, help="epochs when the encoder is pretrained here")
    parser.add_argument("--max-len", type=int, default=50, help="newest history items the sequence keeps (<= 50)")
    parser.add_argument("--out", default="reports/bench")
    parser.add_argument("--name", default="sequences", help="result files: <out>/<name>.json and .md")
    parser.add_argument("--merge", nargs="+", metavar="JSON",
                        help="train nothing: put the runs of these result files (chunks of the grid) into one table")
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out, args.name)
    encoder = Path(args.encoder) if args.encoder else Path(args.out) / "movielens-encoder"
    pretrain: dict[str, Any] = {"encoder": str(encoder)}
    if any(not v.startswith(("bag", "scratch")) for v in args.variants) and not (encoder / "encoder").exists():
        from mtrec.pretraining import pretrain_encoder

        start = time.perf_counter()
        extra = ["--epochs", str(args.pretrain_epochs)] if args.pretrain_epochs else []
        result = pretrain_encoder("movielens-100k", encoder, overrides=[*extra, "--progress", "false"])
        pretrain.update({"seconds": time.perf_counter() - start, "test": result["test"],
                         "best_epoch": result["best_epoch"]})
    data = {"bag": mtrec.datasets.load("movielens-100k"),
            "seq": mtrec.datasets.load("movielens-100k", sequences=True, sequence_len=args.max_len)}
    bag = data["bag"]
    baseline = frame_baseline(bag.schema, bag.tasks, bag.train, bag.test) if "bag" in args.variants else None
    runs = []
    grid = [(v, s) for s in args.seeds for v in args.variants]
    for variant, seed in tqdm(grid, desc="sequences", unit="run"):
        run = run_one(data, variant, seed, args.epochs, encoder)
        runs.append(run)
        tqdm.write(f"{variant:>26} seed {seed}: " + ", ".join(
            f"{t} AUC {m['auc']:.4f} GAUC {m['gauc']:.4f}" for t, m in run["test"].items())
            + f" ({run['seconds_per_epoch']:.1f} s/epoch, {run['epochs_run']} epochs)")
    summary, markdown = summarize(runs, args.variants, baseline)
    write_results(args.out, args.name, {"runs": runs, "summary": summary, "seeds": args.seeds,
                                        "epochs": args.epochs, "max_len": args.max_len,
                                        "pretrain": pretrain, "baseline": baseline}, markdown)
    return summary


def merge(paths: list[str], out: str, name: str) -> dict[str, Any]:
    """One table from the runs of several result files (same max_len and epoch cap, else a one-line error)."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    for key in ("max_len", "epochs"):
        if len({json.dumps(p.get(key)) for p in parts}) > 1:
            raise SystemExit(f"--merge: the files differ in {key} ({', '.join(str(p.get(key)) for p in parts)})")
    runs = [r for p in parts for r in p["runs"]]
    seen = {(r["variant"], r["seed"]) for r in runs}
    if len(seen) < len(runs):
        raise SystemExit("--merge: a (variant, seed) run appears in more than one file")
    baseline = next((p["baseline"] for p in parts if p.get("baseline")), None)
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in runs)]
    summary, markdown = summarize(runs, variants, baseline)
    pretrain = next((p["pretrain"] for p in parts if "seconds" in p.get("pretrain", {})), parts[0].get("pretrain"))
    write_results(out, name, {"runs": runs, "summary": summary,
                              "seeds": sorted({r["seed"] for r in runs}),
                              "epochs": parts[0].get("epochs"), "max_len": parts[0].get("max_len"),
                              "pretrain": pretrain, "baseline": baseline, "merged": paths},
                  markdown)
    return summary


if __name__ == "__main__":
    main()
