"""Measurements the planner and the benchmarks share: per-task AUC drops (AUCs from mtrec.train.metrics) and
robust CPU timings.

Timings are per-thread CPU time (`time.thread_time`), interleaved across the candidates and summarized by the
median, so a busy shared machine (other processes preempting this one) distorts ratios as little as possible.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def auc_drops(base: dict[str, float], new: dict[str, float]) -> dict[str, float]:
    """{task: base AUC - new AUC} (positive = worse)."""
    return {t: float(base[t] - new[t]) for t in base}


def median_seconds(fns: dict[str, Callable[[], object]], repeats: int = 30, warmup: int = 3) -> dict[str, float]:
    """{name: median CPU seconds per call}, calls interleaved round-robin so load affects all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.thread_time()
            fn()
            samples[name].append(time.thread_time() - start)
    return {name: float(np.median(s)) for name, s in samples.items()}
