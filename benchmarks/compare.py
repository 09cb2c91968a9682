"""What changed between two suite runs: AUC deltas beyond seed noise, and speed ratios.

python -m benchmarks.compare A B     (A, B: run directories or results.json files; A is the reference)

An AUC change counts when |B - A| > max(2 * sqrt(std_A^2/n_A + std_B^2/n_B), 0.001). Speed ratios are B / A
(above 1: B is faster; times are inverted so the same holds); beyond ±10% they are marked. Exit status 1 when
an AUC dropped beyond noise.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

NOISE_SIGMAS = 2.0
AUC_FLOOR = 0.001
SPEED_TOLERANCE = 0.10


@dataclass(frozen=True)
class Metric:
    """One comparable number: AUC (higher better), speed (higher better) or time (lower better)."""

    kind: Literal["auc", "speed", "time"]
    mean: float
    std: float = 0.0
    n: int = 1


@dataclass(frozen=True)
class Change:
    """One metric present in both runs."""

    key: str
    kind: str
    a: Metric
    b: Metric

    @property
    def delta(self) -> float:
        return self.b.mean - self.a.mean

    @property
    def noise(self) -> float:
        """The smallest AUC change that counts."""
        spread = math.sqrt(self.a.std ** 2 / self.a.n + self.b.std ** 2 / self.b.n)
        return max(NOISE_SIGMAS * spread, AUC_FLOOR)

    @property
    def ratio(self) -> float:
        """B relative to A, oriented so that above 1 is better (faster)."""
        if self.kind == "time":
            return self.a.mean / self.b.mean if self.b.mean else math.inf
        return self.b.mean / self.a.mean if self.a.mean else math.inf


def _ms(value: dict[str, Any], kind: Literal["auc", "speed", "time"]) -> Metric:
    return Metric(kind, value["mean"], value["std"], value["n"])


def _samples(values: list[float]) -> Metric:
    mean = sum(values) / len(values)
    return Metric("speed", mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)), len(values))


def metrics(results: dict[str, Any]) -> Iterator[tuple[str, Metric]]:
    """Every comparable number of a results.json, keyed by where it lives."""
    benches = {k: v["results"] for k, v in results["benchmarks"].items() if v["status"] == "done"}
    for dataset, models in benches.get("multitask", {}).get("summary", {}).items():
        for model, v in models.items():
            for task, value in v.items():
                if task == "seconds":
                    yield f"multitask/{dataset}/{model} train s", _ms(value, "time")
                elif task != "parameters":
                    yield f"multitask/{dataset}/{model}/{task} AUC", _ms(value, "auc")
    for dataset, entries in benches.get("new_task", {}).get("summary", {}).items():
        for key, e in entries.items():
            if "/" in key:
                yield f"new_task/{dataset}/{key} new-task AUC", _ms(e["new_auc"], "auc")
                for task, value in e["old_auc"].items():
                    yield f"new_task/{dataset}/{key}/{task} AUC after", _ms(value, "auc")
                yield f"new_task/{dataset}/{key} s", _ms(e["seconds"], "time")
    for r in benches.get("throughput", {}).get("results", []):
        for impl, samples in r["samples"].items():
            yield f"throughput/batch {r['batch_size']}/{impl} ex/s", _samples(samples)
    for name, c in benches.get("inference", {}).get("configs", {}).items():
        for task, auc in c["auc"].items():
            yield f"inference/{name}/{task} AUC", Metric("auc", auc)
        for size, speeds in c["speed"].items():
            for how in ("model_eps", "end_to_end_eps"):
                yield f"inference/{name}/{size} {how}", Metric("speed", speeds[how])
    for r in benches.get("scaling", {}).get("results", []):
        yield f"scaling/{r['workers']} x {r['sharding']} ex/s", Metric("speed", r["examples_per_second"])
    for size in benches.get("batch_predict", {}).get("sizes", []):
        for r in size["runs"]:
            yield (f"batch_predict/{size['rows']} rows/{r['workers_requested']} x {r['precision']} rows/s",
                   Metric("speed", r["rows_per_s"]))
    serve = benches.get("serve_load")
    if serve:
        yield "serve_load requests/s", Metric("speed", serve["requests_per_second"])
        yield "serve_load p99 ms", Metric("time", serve["p99_ms"])


def changes(a: dict[str, Any], b: dict[str, Any]) -> list[Change]:
    """Every metric present in both runs, in A's order."""
    mb = dict(metrics(b))
    return [Change(key, m.kind, m, mb[key]) for key, m in metrics(a) if key in mb]


def auc_drops(a: dict[str, Any], b: dict[str, Any]) -> list[Change]:
    """AUC metrics that fell by more than the noise from A to B."""
    return [c for c in changes(a, b) if c.kind == "auc" and c.delta < -c.noise]


def report(a: dict[str, Any], b: dict[str, Any]) -> str:
    """The comparison as text: context, AUC changes beyond noise, speed ratios."""
    ea, eb = a["environment"], b["environment"]
    lines = [f"A: {a['suite']['profile']} profile, commit {ea['git_commit'][:12]}, {a['suite']['created']}",
             f"B: {b['suite']['profile']} profile, commit {eb['git_commit'][:12]}, {b['suite']['created']}"]
    if ea["cpu"] != eb["cpu"] or ea["torch_threads"] != eb["torch_threads"]:
        lines.append(f"note: different machines/threads ({ea['cpu']} x{ea['torch_threads']} vs "
                     f"{eb['cpu']} x{eb['torch_threads']}); speed ratios are not comparable")
    all_changes = changes(a, b)
    aucs = [c for c in all_changes if c.kind == "auc"]
    moved = [c for c in aucs if abs(c.delta) > c.noise]
    lines += ["", f"AUC: {len(moved)} of {len(aucs)} changed beyond noise"]
    for c in moved:
        tag = "REGRESSION" if c.delta < 0 else "improved"
        lines.append(f"  {tag:<10} {c.key}: {c.a.mean:.4f} -> {c.b.mean:.4f} ({c.delta:+.4f}, "
                     f"{100 * c.delta / c.a.mean:+.2f}%; noise ±{c.noise:.4f})")
    speeds = [c for c in all_changes if c.kind != "auc"]
    lines += ["", f"Speed: B / A (above 1: B faster), {len(speeds)} measurements"]
    for c in speeds:
        mark = "" if abs(c.ratio - 1) <= SPEED_TOLERANCE else ("  FASTER" if c.ratio > 1 else "  SLOWER")
        lines.append(f"  {c.ratio:6.2f}x  {c.key}: {c.a.mean:,.4g} -> {c.b.mean:,.4g}{mark}")
    only = sorted(set(dict(metrics(a))) ^ set(dict(metrics(b))))
    if only:
        lines += ["", f"{len(only)} metric(s) present in only one run (not compared)"]
    return "\n".join(lines)


def load(path: str | Path) -> dict[str, Any]:
    """A results.json, given the file or its run directory."""
    p = Path(path)
    return json.loads((p / "results.json" if p.is_dir() else p).read_text())


def main(argv: list[str] | None = None) -> int:
    """Print the comparison of two runs; exit 1 when an AUC dropped beyond noise."""
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 2:
        print("usage: python -m benchmarks.compare A B  (run directories or results.json files)", file=sys.stderr)
        return 2
    a, b = load(args[0]), load(args[1])
    print(report(a, b))
    drops = auc_drops(a, b)
    if drops:
        print(f"\n{len(drops)} AUC regression(s) beyond noise")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
