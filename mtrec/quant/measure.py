"""Measurements the planner and the benchmarks share: per-task AUC drops and robust CPU timings.

Timings are per-thread CPU time (`time.thread_time`), interleaved across the candidates and summarized by the
median, so a busy shared machine (other processes preempting this one) distorts ratios as little as possible.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from scipy.stats import rankdata


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic with average ranks for ties (equals scikit-learn's, much faster)."""
    positive = labels > 0.5
    n_pos = int(positive.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores.astype(np.float64))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def task_aucs(labels: np.ndarray, probs: np.ndarray, tasks: list[str]) -> dict[str, float]:
    """{task: AUC} of [N, T] probabilities against [N, T] labels."""
    return {t: auc(labels[:, i], probs[:, i]) for i, t in enumerate(tasks)}


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
