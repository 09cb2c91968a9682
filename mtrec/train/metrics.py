"""The one AUC (rank statistic), per-task AUC, log loss, calibration and per-user GAUC, and their mean across tasks.

GAUC and calibration follow torchrec.metrics (torchrec/metrics/gauc.py, calibration.py in torchrec 1.8): a
group's AUC counts positive-over-negative pairs, groups with a single class are skipped, calibration is
sum(predictions) / sum(labels). Two deliberate differences, as the issue defines GAUC: groups are weighted by their
impressions (torchrec averages groups unweighted; `gauc_unweighted` is its figure) and tied scores count 1/2 as in
`auc` (torchrec breaks ties by sort order and skips groups whose predictions are all equal). NaN, not torchrec's
0.0, when there is no positive label.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import log_loss

Metrics = dict[str, dict[str, float]]  # {task: {"auc", "logloss", ...}}


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of one binary task as the Mann-Whitney statistic with average ranks for ties (scikit-learn's value to
    ~1e-16, ~4x faster); NaN when only one class is present."""
    positive = np.asarray(labels).reshape(-1) > 0.5
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(scores).reshape(-1).astype(np.float64))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def task_aucs(labels: np.ndarray, probs: np.ndarray, tasks: list[str]) -> dict[str, float]:
    """{task: AUC} of [N, T] probabilities against [N, T] labels."""
    return {t: auc(labels[:, i], probs[:, i]) for i, t in enumerate(tasks)}


def group_aucs(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-group AUC (NaN for a group with one class) and impressions, groups = ids 0..G-1; vectorized: one sort by
    (group, score), average ranks of ties within a group, per-group sums by bincount (no loop over groups)."""
    y = np.asarray(labels).reshape(-1) > 0.5
    s = np.asarray(scores).reshape(-1).astype(np.float64)
    g = np.asarray(groups).reshape(-1).astype(np.int64)
    size = int(g.max()) + 1 if len(g) else 0
    order = np.lexsort((s, g))
    gs, ss, ys = g[order], s[order], y[order]
    pos = np.arange(len(gs))
    new_group = np.r_[True, gs[1:] != gs[:-1]] if len(gs) else np.zeros(0, dtype=bool)
    in_group = pos - np.maximum.accumulate(np.where(new_group, pos, 0))
    new_tie = new_group | np.r_[True, ss[1:] != ss[:-1]] if len(gs) else new_group
    tie = np.cumsum(new_tie) - 1
    first, count = in_group[new_tie], np.bincount(tie) if len(gs) else np.zeros(0, dtype=np.int64)
    rank = (first + (count - 1) / 2 + 1)[tie]
    n = np.bincount(gs, minlength=size).astype(np.float64)
    n_pos = np.bincount(gs, weights=ys, minlength=size)
    n_neg = n - n_pos
    rank_sum = np.bincount(gs, weights=rank * ys, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    out[(n_pos == 0) | (n_neg == 0)] = np.nan
    return out, n


def gauc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """{"gauc": impression-weighted mean of per-group AUC, "gauc_unweighted": torchrec's plain mean, "gauc_groups":
    groups counted} over groups with both classes (NaN when none has)."""
    aucs, n = group_aucs(labels, scores, groups)
    ok = ~np.isnan(aucs)
    if not ok.any():
        return {"gauc": float("nan"), "gauc_unweighted": float("nan"), "gauc_groups": 0}
    return {"gauc": float((aucs[ok] * n[ok]).sum() / n[ok].sum()), "gauc_unweighted": float(aucs[ok].mean()),
            "gauc_groups": int(ok.sum())}


def calibration(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean prediction over observed positive rate (sum(p) / sum(y), torchrec's calibration); NaN without positives."""
    positives = float(np.asarray(labels, dtype=np.float64).sum())
    return float(np.asarray(probs, dtype=np.float64).sum() / positives) if positives > 0 else float("nan")


def task_metrics(labels: np.ndarray, probs: np.ndarray, tasks: list[str], groups: np.ndarray | None = None) -> Metrics:
    """{task: {"auc", "logloss", "calibration", "positive_rate", "rows"}} for [N, T] labels and probabilities, plus
    "gauc" (and "gauc_unweighted", "gauc_groups") when `groups` gives each row's user as an id 0..G-1."""
    out: Metrics = {}
    for i, task in enumerate(tasks):
        y = labels[:, i]
        p = np.clip(probs[:, i].astype(np.float64), 1e-7, 1 - 1e-7)  # for the logloss only: clipping makes ties
        out[task] = {"auc": auc(y, probs[:, i]), "logloss": float(log_loss(y, p, labels=[0, 1])),
                     "calibration": calibration(y, probs[:, i]), "positive_rate": float(y.mean()), "rows": int(len(y))}
        if groups is not None:
            out[task].update(gauc(y, probs[:, i], groups))
    return out


def mean_auc(metrics: Metrics) -> float:
    """Mean AUC over tasks (the default early-stopping score)."""
    return float(np.mean([m["auc"] for m in metrics.values()]))


def per_task_line(metrics: Metrics) -> str:
    """", GAUC a/b, calibration c/d" over the tasks (GAUC only where computed), for the training log's epoch line."""
    parts: list[str] = []
    if not metrics or not all(isinstance(m, dict) for m in metrics.values()):
        return ""
    if all("gauc" in m for m in metrics.values()):
        parts.append("GAUC " + "/".join(f"{m['gauc']:.4f}" for m in metrics.values()))
    if all("calibration" in m for m in metrics.values()):
        parts.append("calibration " + "/".join(f"{m['calibration']:.3f}" for m in metrics.values()))
    return "".join(f", {p}" for p in parts)
