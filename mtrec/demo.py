"""The main job, end to end on an embedded default: adult -> train mptrec -> evaluate -> save -> print."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import mtrec


def run(model_name: str = "mptrec", dataset: str = "adult", epochs: int | None = None, seed: int = 0,
        out: str = "runs/demo") -> dict:
    """Train one recipe, print the per-task test AUC table, save a checkpoint and a JSON summary."""
    start = time.perf_counter()
    data = mtrec.datasets.load(dataset)
    print(f"{dataset}: {len(data.train):,} train / {len(data.valid):,} valid / {len(data.test):,} test rows; "
          f"tasks {data.tasks}, held-back tasks {data.new_tasks}")
    model = mtrec.build_model(model_name, schema=data.schema, tasks=data.tasks, dataset=dataset)
    result = mtrec.train(model, data.train, valid=data.valid, epochs=epochs, seed=seed)
    test = mtrec.evaluate(model, data.test)
    ckpt = mtrec.save(model, Path(out) / f"{model_name}_{dataset}")
    reloaded = mtrec.load(ckpt)
    same = bool((reloaded.predict(data.test.head(2000)).to_numpy() == model.predict(data.test.head(2000)).to_numpy()).all())
    print(f"\n{model_name} on {dataset} (best epoch {result.best_epoch}, {result.seconds:.1f} s training, "
          f"{result.examples_per_second:,.0f} examples/s, {model.num_parameters():,} parameters)")
    print(f"  {'task':<12}{'test AUC':>10}{'logloss':>10}")
    for task, m in test.items():
        print(f"  {task:<12}{m['auc']:>10.4f}{m['logloss']:>10.4f}")
    print(f"checkpoint: {ckpt} (reloaded predictions bit-identical: {same})")
    summary = {"model": model_name, "dataset": dataset, "test": test, "best_epoch": result.best_epoch,
               "train_seconds": result.seconds, "examples_per_second": result.examples_per_second,
               "parameters": model.num_parameters(), "checkpoint": str(ckpt), "reload_identical": same,
               "total_seconds": time.perf_counter() - start}
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main() -> None:
    """`python -m mtrec.demo [--model mptrec] [--dataset adult] [--epochs N]`."""
    parser = argparse.ArgumentParser(prog="python -m mtrec.demo")
    parser.add_argument("--model", default="mptrec")
    parser.add_argument("--dataset", default="adult")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/demo")
    args = parser.parse_args()
    run(args.model, args.dataset, args.epochs, args.seed, args.out)


if __name__ == "__main__":
    main()
