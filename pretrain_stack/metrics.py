"""Top-k ranking metrics for next-item prediction: HR@k and NDCG@k, against sampled negatives and all items.

Sampled: the target is ranked against `num_negatives` items drawn uniformly, without replacement and with a
fixed seed, from the items the user never interacted with (the BERT4Rec/SASRec papers' convention).
Full: the target is ranked against every item except special tokens and the user's other interacted items.
Ties count at their expected value under a random tie-break, so a constant scorer gets chance level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PROTOCOL = {
    "sampled": "target vs {n} negatives drawn uniformly without replacement (seed {seed}) from the items the user "
               "never interacted with",
    "full": "target vs all items, excluding the user's other interacted items (all splits) and special tokens",
    "ties": "expected value under a uniformly random tie-break",
    "popularity": "items scored by their interaction count in the training part of every user's sequence",
}


@dataclass
class EvalSet:
    """One split's ranking problem: targets [U], fixed sampled negatives [U, n], full-ranking exclusions [U, V]."""

    targets: np.ndarray
    negatives: np.ndarray
    exclude: np.ndarray


def sample_negatives(user_items: list[np.ndarray], items: np.ndarray, num_negatives: int,
                     rng: np.random.Generator) -> np.ndarray:
    """For each user, `num_negatives` distinct ids from `items` the user never interacted with."""
    out = np.empty((len(user_items), num_negatives), dtype=np.int64)
    for u, seen in enumerate(user_items):
        pool = np.setdiff1d(items, seen, assume_unique=False)
        if len(pool) < num_negatives:
            raise ValueError(f"user {u}: only {len(pool)} unseen items, cannot sample {num_negatives} negatives")
        out[u] = rng.choice(pool, size=num_negatives, replace=False)
    return out


def build_eval_set(user_items: list[np.ndarray], targets: np.ndarray, num_items: int, vocab_size: int,
                   num_negatives: int, seed: int) -> EvalSet:
    """Fix a split's negatives and exclusions once, so every epoch and the popularity baseline see the same test."""
    items = np.arange(1, num_items + 1)
    negatives = sample_negatives(user_items, items, num_negatives, np.random.default_rng(seed))
    exclude = np.ones((len(user_items), vocab_size), dtype=bool)
    exclude[:, items] = False
    for u, seen in enumerate(user_items):
        exclude[u, seen] = True
        exclude[u, targets[u]] = False
    return EvalSet(targets=np.asarray(targets, dtype=np.int64), negatives=negatives, exclude=exclude)


def expected_hr_ndcg(greater: np.ndarray, ties: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-user HR@k and NDCG@k when the target's 0-based rank is uniform on [greater, greater + ties]."""
    discount = 1.0 / np.log2(np.arange(k) + 2.0)
    prefix = np.r_[0.0, np.cumsum(discount)]
    lo = np.minimum(greater, k)
    hi = np.minimum(greater + ties + 1, k)
    count = ties + 1.0
    return (hi - lo) / count, (prefix[hi] - prefix[lo]) / count


def ranking_metrics(scores: np.ndarray, eval_set: EvalSet, k: int = 10) -> dict[str, float]:
    """HR@k / NDCG@k of `scores` [U, V] (higher = more likely next), sampled and full."""
    scores = np.asarray(scores, dtype=np.float64)
    rows = np.arange(len(eval_set.targets))
    pos = scores[rows, eval_set.targets][:, None]
    neg = scores[rows[:, None], eval_set.negatives]
    hr_s, ndcg_s = expected_hr_ndcg((neg > pos).sum(1), (neg == pos).sum(1), k)
    full = np.where(eval_set.exclude, -np.inf, scores)
    hr_f, ndcg_f = expected_hr_ndcg((full > pos).sum(1), (full == pos).sum(1) - 1, k)
    return {f"hr@{k}_sampled": float(hr_s.mean()), f"ndcg@{k}_sampled": float(ndcg_s.mean()),
            f"hr@{k}_full": float(hr_f.mean()), f"ndcg@{k}_full": float(ndcg_f.mean())}


def popularity_scores(train_sequences: list[np.ndarray], vocab_size: int) -> np.ndarray:
    """Interaction count of every vocabulary id in the training sequences (the popularity baseline's scores)."""
    counts = np.zeros(vocab_size, dtype=np.float64)
    for s in train_sequences:
        np.add.at(counts, s, 1.0)
    return counts
