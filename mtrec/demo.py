"""The main job, end to end on an embedded default: adult -> train mptrec on 2 Ray Train workers with sharded
tables (an embedded Ray on 127.0.0.1) -> evaluate -> save -> print, then add the held-back task with prompt
tuning and compare it with a joint retrain."""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np

import mtrec


def run(model_name: str = "mptrec", dataset: str = "adult", epochs: int | None = None, seed: int = 0,
        out: str = "runs/demo", workers: int = 2) -> dict:
    """Train one recipe (on `workers` Ray workers; 0 = in this process), print the per-task test AUC table, save
    a checkpoint and a JSON summary."""
    start = time.perf_counter()
    data = mtrec.datasets.load(dataset)
    print(f"{dataset}: {len(data.train):,} train / {len(data.valid):,} valid / {len(data.test):,} test rows; "
          f"tasks {data.tasks}, held-back tasks {data.new_tasks}")
    model = mtrec.build_model(model_name, schema=data.schema, tasks=data.tasks, dataset=dataset)
    if workers:
        print(f"training on {workers} Ray Train workers (embedded local Ray on 127.0.0.1, TorchRec-sharded tables)")
        distributed = {"storage_path": str(Path(out).resolve() / "ray")}
        result = mtrec.train(model, data.train, valid=data.valid, epochs=epochs, seed=seed, workers=workers,
                             distributed=distributed)
    else:
        result = mtrec.train(model, data.train, valid=data.valid, epochs=epochs, seed=seed)
    test = mtrec.evaluate(model, data.test)
    ckpt = mtrec.save(model, Path(out) / f"{model_name}_{dataset}", overwrite=True)  # the demo's own output
    reloaded = mtrec.load(ckpt)
    same = bool((reloaded.predict(data.test.head(2000)).to_numpy() == model.predict(data.test.head(2000)).to_numpy()).all())
    print(f"\n{model_name} on {dataset} (best epoch {result.best_epoch}, {result.seconds:.1f} s training, "
          f"{result.examples_per_second:,.0f} examples/s, {model.num_parameters():,} parameters)")
    print(f"  {'task':<12}{'test AUC':>10}{'logloss':>10}")
    for task, m in test.items():
        print(f"  {task:<12}{m['auc']:>10.4f}{m['logloss']:>10.4f}")
    print(f"checkpoint: {ckpt} (reloaded predictions bit-identical: {same})")
    added = add_new_task(model, data, test, seed, out, epochs) if data.new_tasks else None
    summary = {"model": model_name, "dataset": dataset, "workers": workers, "test": test, "best_epoch": result.best_epoch,
               "train_seconds": result.seconds, "examples_per_second": result.examples_per_second,
               "parameters": model.num_parameters(), "checkpoint": str(ckpt), "reload_identical": same,
               "add_task": added, "total_seconds": time.perf_counter() - start}
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def add_new_task(model: mtrec.MultiTaskModel, data: mtrec.datasets.Dataset, before: dict, seed: int,
                 out: str, epochs: int | None = None) -> dict:
    """Add the held-back task with prompt tuning (frozen backbone), compare with a joint retrain (same recipe and
    epochs as the pre-training), print both."""
    task = data.new_tasks[0]
    joint_model = copy.deepcopy(model)
    old = model.predict(data.test).to_numpy()
    print(f"\nadding {task!r}: prompt tuning on the frozen backbone, then a full joint retrain to compare")
    prompt = mtrec.add_task(model, task, data.train, valid=data.valid, method="prompt", seed=seed)
    identical = bool(np.array_equal(model.predict(data.test)[data.tasks].to_numpy(), old))
    joint = mtrec.add_task(joint_model, task, data.train, valid=data.valid, method="joint", seed=seed,
                           **({"epochs": epochs} if epochs else {}))
    after, retrained = mtrec.evaluate(model, data.test), mtrec.evaluate(joint_model, data.test)
    print(f"  {'task':<12}{'before':>10}{'prompt':>10}{'joint':>10}")
    for name in [*data.tasks, task]:
        shown = f"{before[name]['auc']:>10.4f}" if name in before else f"{'-':>10}"
        print(f"  {name:<12}{shown}{after[name]['auc']:>10.4f}{retrained[name]['auc']:>10.4f}")
    print(f"  trainable: prompt {prompt.trainable_params:,} of {prompt.total_params:,} parameters "
          f"({100 * prompt.trainable_share:.1f}%), joint {joint.trainable_params:,} (100%)")
    print(f"  time: prompt {prompt.seconds:.1f} s, joint {joint.seconds:.1f} s "
          f"({joint.seconds / prompt.seconds:.1f}x faster)")
    print(f"  old tasks' predictions bit-identical after prompt: {identical}")
    ckpt = mtrec.save(model, Path(out) / f"{model.name}_{data.name}_plus_{task}", overwrite=True)
    print(f"checkpoint with {task!r}: {ckpt}")
    return {"task": task, "prompt": {"test": after, "trainable_params": prompt.trainable_params,
                                     "total_params": prompt.total_params, "seconds": prompt.seconds},
            "joint": {"test": retrained, "seconds": joint.seconds}, "old_identical": identical,
            "checkpoint": str(ckpt)}


def main() -> None:
    """`python -m mtrec.demo [--model mptrec] [--dataset adult] [--epochs N]`."""
    parser = argparse.ArgumentParser(prog="python -m mtrec.demo")
    parser.add_argument("--model", default="mptrec")
    parser.add_argument("--dataset", default="adult")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/demo")
    parser.add_argument("--workers", type=int, default=2, help="Ray Train workers (0: train in this process)")
    args = parser.parse_args()
    run(args.model, args.dataset, args.epochs, args.seed, args.out, args.workers)


if __name__ == "__main__":
    main()
