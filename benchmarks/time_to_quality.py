"""Time to quality on Adult (a regression guard): training wall time for mtrec's MPT-Rec recipe to reach, on both
tasks, the test AUC that the plain-PyTorch MPT-Rec reaches at the reference settings (batch 256, lr 1e-3,
embedding dim 4, dense Adam), against the plain implementation's own time to it. Both evaluate the test split
after every epoch; evaluation time is not counted.

python -m benchmarks.time_to_quality [--seeds 0 1 2] [--plain-epochs 10] [--threads 2] [--out reports/bench]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

import mtrec
from benchmarks.common import mean_std, write_results
from benchmarks.throughput import PlainEmbeddings, PlainMPTRec, plain_batch
from mtrec.data.vocab import Vocabularies
from mtrec.model import task_probabilities
from mtrec.train.metrics import task_aucs


def _first_reaching(curve: list[dict[str, Any]], target: dict[str, float]) -> float | None:
    """Cumulative training seconds at the first epoch whose AUC reaches `target` on every task (None if never)."""
    for point in curve:
        if all(point["auc"][t] >= v for t, v in target.items()):
            return point["seconds"]
    return None


def plain_curve(data: Any, seed: int, epochs: int) -> list[dict[str, Any]]:
    """The plain MPT-Rec at the reference settings: per epoch, cumulative training seconds and test AUC per task."""
    model = mtrec.build_model("mptrec", schema=data.schema, tasks=data.tasks, dataset="adult")
    model.build_network(Vocabularies.fit(data.train, model.schema), seed=seed)
    features = model.schema.sparse
    train, test = model.encode(data.train), model.encode(data.test)
    test_batches = [plain_batch(b, features) for b in test.batches(8192)]
    labels = test.labels_array()
    torch.manual_seed(seed)
    plain = PlainMPTRec(PlainEmbeddings([model.vocabs.num_embeddings(f) for f in features], dim=4), len(data.tasks))
    optimizer = torch.optim.Adam(plain.parameters(), lr=1e-3)
    steps_per_epoch = len(train) // 256
    total, step, seconds, curve = steps_per_epoch * epochs, 0, 0.0, []
    for epoch in range(epochs):
        plain.train()
        start = time.perf_counter()
        for batch in train.batches(256, shuffle=True, seed=seed + epoch, drop_last=True):
            ids, y = plain_batch(batch, features)
            loss = plain(ids, y, step / total)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
        seconds += time.perf_counter() - start
        plain.eval()
        with torch.no_grad():
            probs = torch.cat([task_probabilities(plain.logits(b[0])) for b in test_batches]).numpy()
        curve.append({"epoch": epoch + 1, "seconds": seconds, "auc": task_aucs(labels, probs, data.tasks)})
    return curve


def mtrec_curve(data: Any, seed: int, epochs: int | None, compile: bool | None = None) -> list[dict[str, Any]]:
    """mtrec's recipe (its batch size, learning rates, machine-chosen precision) with the test split as the per-epoch
    evaluation and no early stopping: cumulative training seconds and test AUC per task after every epoch."""
    model = mtrec.build_model("mptrec", schema=data.schema, tasks=data.tasks, dataset="adult")
    result = mtrec.train(model, data.train, valid=data.test, seed=seed, epochs=epochs, patience=10 ** 6,
                         compile=compile, progress=False)
    seconds, curve = 0.0, []
    for record in result.history:
        seconds += record["seconds"]
        curve.append({"epoch": record["epoch"], "seconds": seconds,
                      "auc": {t: record["valid"][t]["auc"] for t in data.tasks}})
    return curve


def measure(data: Any, seed: int, plain_epochs: int, mtrec_epochs: int | None,
            compile: bool | None = None) -> dict[str, Any]:
    """One seed: both curves, the plain model's final test AUC as the target, each side's seconds to reach it."""
    plain = plain_curve(data, seed, plain_epochs)
    ours = mtrec_curve(data, seed, mtrec_epochs, compile)
    target = dict(plain[-1]["auc"])
    plain_s, mtrec_s = _first_reaching(plain, target), _first_reaching(ours, target)
    return {"seed": seed, "target_auc": target, "plain": plain, "mtrec": ours, "plain_seconds": plain_s,
            "mtrec_seconds": mtrec_s, "speedup": plain_s / mtrec_s if mtrec_s else None}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure every seed and write time_to_quality.json / .md."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.time_to_quality")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--plain-epochs", type=int, default=10, help="the plain model's epochs (its final AUC is the target)")
    parser.add_argument("--mtrec-epochs", type=int, help="mtrec's epochs (default: the recipe's)")
    parser.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                        help="mtrec's train.compile (auto: the machine decides, as in the recipe)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="reports/bench")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = mtrec.datasets.load("adult")
    compile = {"auto": None, "on": True, "off": False}[args.compile]
    runs = [measure(data, seed, args.plain_epochs, args.mtrec_epochs, compile) for seed in args.seeds]
    reached = [r["speedup"] for r in runs if r["speedup"] is not None]
    summary = {"speedup": mean_std(reached) if reached else None, "reached": len(reached), "seeds": len(runs)}
    lines = ["# Time to quality on adult: mtrec's recipe vs plain PyTorch at the reference settings", "",
             f"{args.threads} threads; target = the plain model's test AUC after {args.plain_epochs} epochs.", "",
             "| seed | target AUC | plain s | mtrec s | mtrec epochs | plain s / mtrec s |", "|---|---|---|---|---|---|"]
    for r in runs:
        epochs = next((p["epoch"] for p in r["mtrec"] if p["seconds"] == r["mtrec_seconds"]), "-")
        lines.append(f"| {r['seed']} | {' / '.join(f'{v:.4f}' for v in r['target_auc'].values())} | "
                     f"{r['plain_seconds']:.1f} | " + (f"{r['mtrec_seconds']:.1f} | {epochs} | {r['speedup']:.1f}x |"
                                                     if r["speedup"] else "not reached | - | - |"))
    markdown = "\n".join(lines) + "\n"
    write_results(args.out, "time_to_quality", {"runs": runs, "summary": summary, "threads": args.threads,
                                                "plain_epochs": args.plain_epochs}, markdown)
    return summary


if __name__ == "__main__":
    main()
