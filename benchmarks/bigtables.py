"""A synthetic Criteo-shaped training workload for the throughput benchmark: 26 sparse features on tables of
100k-1M rows (dims 16-64, three multi-hot bags), 13 dense features, two tasks.

The same MPT-Rec architecture is built twice: as mtrec's network (pretrain_stack config: one `sparse_features`
part per embedding dim, FBGEMM fused tables in training) and in plain PyTorch (one `nn.EmbeddingBag` per
feature, trained with dense Adam, or with `sparse=True` tables and torch's SparseAdam). Both read identical ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torchrec import KeyedJaggedTensor

import pretrain_stack
import mtrec.models  # noqa: F401  (registers the mptrec encoder and target)
from mtrec.data.batches import Batch

TASKS = ["click", "convert"]
NUM_DENSE = 13
MULTI_HOT_MAX = 8  # a multi-hot bag holds 1..8 ids


@dataclass(frozen=True)
class Feature:
    """One sparse feature with its own table."""

    name: str
    rows: int
    dim: int
    multi_hot: bool = False


def criteo_features(scale: float = 1.0) -> list[Feature]:
    """26 features: 2 x 1M rows and 2 x 500k at dim 16, 22 x 100k at dims 64 (2), 32 (4), 16 (16); three of the
    100k ones are multi-hot bags. `scale` multiplies every row count (tests use a small one)."""
    spec = [(1_000_000, 16)] * 2 + [(500_000, 16)] * 2 + [(100_000, 64)] * 2 + [(100_000, 32)] * 4 + \
        [(100_000, 16)] * 16
    return [Feature(f"c{i}", max(2, int(rows * scale)), dim, multi_hot=i in (6, 10, 14))
            for i, (rows, dim) in enumerate(spec)]


@dataclass
class PlainInputs:
    """One batch in plain-PyTorch form: per feature (ids, offsets), dense [B, 13], labels [B, T]."""

    bags: list[tuple[torch.Tensor, torch.Tensor]]
    dense: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.dense.shape[0])


def make_batches(features: list[Feature], batch_size: int, count: int, seed: int = 0) -> tuple[list[Batch],
                                                                                               list[PlainInputs]]:
    """`count` batches with skewed ids (id = floor(rows * u^3): a few hot rows, a long tail), as mtrec Batches
    (one KJT) and as the same ids in plain form."""
    rng = np.random.default_rng(seed)
    ours, plain = [], []
    for _ in range(count):
        values, lengths, bags = [], [], []
        for f in features:
            n = rng.integers(1, MULTI_HOT_MAX + 1, batch_size) if f.multi_hot else np.ones(batch_size, np.int64)
            ids = torch.from_numpy(np.floor(f.rows * rng.random(int(n.sum())) ** 3).astype(np.int64))
            length = torch.from_numpy(n.astype(np.int64))
            values.append(ids)
            lengths.append(length)
            bags.append((ids, torch.cat([torch.zeros(1, dtype=torch.int64), length.cumsum(0)[:-1]])))
        dense_np = rng.standard_normal((batch_size, NUM_DENSE)).astype(np.float32)
        logit = dense_np[:, :len(TASKS)]
        labels = torch.from_numpy((rng.random(logit.shape) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float32))
        dense = torch.from_numpy(dense_np)
        kjt = KeyedJaggedTensor.from_lengths_sync([f.name for f in features], torch.cat(values), torch.cat(lengths))
        ours.append(Batch(kjt, dense, labels))
        plain.append(PlainInputs(bags, dense, labels))
    return ours, plain


def mtrec_network(features: list[Feature], experts: tuple[int, ...] = (256, 128),
                  towers: tuple[int, ...] = (64, 32)) -> pretrain_stack.Model:
    """mtrec's MPT-Rec network over `features`: one sparse_features part per embedding dim (sum pooling), dense."""
    by_dim: dict[int, list[dict]] = {}
    for f in features:
        by_dim.setdefault(f.dim, []).append({"name": f.name, "num_embeddings": f.rows})
    parts = [{"name": "sparse_features", "embedding_dim": dim, "features": specs, "init_std": 0.01}
             for dim, specs in by_dim.items()]
    config = {"embedding": {"combine": "concat", "parts": [*parts, {"name": "dense_features"}]},
              "encoder": {"name": "mptrec", "expert_hidden": list(experts), "tower_hidden": list(towers),
                          "classifier_hidden": [64]},
              "target": {"name": "mptrec", "gen_coe": 0.1, "env_coe": 0.1}}
    return pretrain_stack.build_model(config, num_dense=NUM_DENSE, tasks=list(TASKS))


def input_order(features: list[Feature]) -> list[Feature]:
    """The features in the order mtrec's embedding concatenates them (grouped by dim, first appearance first)."""
    dims = list(dict.fromkeys(f.dim for f in features))
    return [f for d in dims for f in features if f.dim == d]


class PlainBags(nn.Module):
    """One nn.EmbeddingBag (sum) per feature, concatenated with the dense features (the plain-PyTorch input)."""

    def __init__(self, features: list[Feature], sparse: bool) -> None:
        super().__init__()
        self.order = [features.index(f) for f in input_order(features)]
        self.bags = nn.ModuleList(nn.EmbeddingBag(f.rows, f.dim, mode="sum", sparse=sparse) for f in features)
        for bag in self.bags:
            nn.init.normal_(bag.weight, 0.0, 0.01)
        self.output_dim = sum(f.dim for f in features) + NUM_DENSE

    def forward(self, inputs: PlainInputs) -> torch.Tensor:
        pooled = [self.bags[i](*inputs.bags[i]) for i in self.order]
        return torch.cat([*pooled, inputs.dense], dim=1)
