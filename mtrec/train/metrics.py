"""Per-task AUC and log loss (scikit-learn), and their mean across tasks."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

Metrics = dict[str, dict[str, float]]  # {task: {"auc", "logloss", ...}}


def task_metrics(labels: np.ndarray, probs: np.ndarray, tasks: list[str]) -> Metrics:
    """{task: {"auc", "logloss", "positive_rate", "rows"}} for [N, T] labels and probabilities."""
    out: dict[str, dict[str, float]] = {}
    for i, task in enumerate(tasks):
        y = labels[:, i]
        p = np.clip(probs[:, i].astype(np.float64), 1e-7, 1 - 1e-7)  # for the logloss only: clipping makes ties
        auc = float(roc_auc_score(y, probs[:, i])) if 0 < y.sum() < len(y) else float("nan")
        out[task] = {"auc": auc, "logloss": float(log_loss(y, p, labels=[0, 1])),
                     "positive_rate": float(y.mean()), "rows": int(len(y))}
    return out


def mean_auc(metrics: Metrics) -> float:
    """Mean AUC over tasks (the early-stopping score)."""
    return float(np.mean([m["auc"] for m in metrics.values()]))
