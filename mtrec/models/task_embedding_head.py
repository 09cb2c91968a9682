"""The `task_embedding` method's head: the prompt head plus the new task's own embedding tables on the raw input.

A frozen backbone can only offer a new task what the old tasks needed: features they ignored reach the prompt
head as (nearly untrained) frozen embeddings mixed away by the old experts. This head gives the new task its own
small tables over the raw sparse ids (STEM-style task-specific embeddings that no old task reads), pooled per
feature and concatenated with the raw dense features, into a small MLP whose logit is added to the prompt head's:

  logit = prompt_head(frozen representations) + MLP([own_emb(x_sparse) ; x_dense])

The MLP's last layer starts at zero, so training starts from the prompt head alone. Old tasks never read these
tables, so their predictions stay bit-identical; the tables count in the trainable share.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from mtrec.models.heads import HEADS, RAW_DENSE, RAW_SPARSE, TaskHead, build_head


@HEADS.register("task_embedding")
class TaskEmbeddingHead(TaskHead):
    """An inner (prompt) head plus own mean-pooled embedding tables of `features` and an MLP on them and the dense
    input; one table of sum(feature_rows) rows, feature k's ids offset by the rows before it (one lookup)."""

    raw_inputs = True

    def __init__(self, inner: dict[str, Any], features: tuple[str, ...], feature_rows: tuple[int, ...],
                 num_dense: int, embedding_dim: int = 4, side_hidden: tuple[int, ...] = (32,),
                 init_std: float = 0.05) -> None:
        features, feature_rows, side_hidden = tuple(features), tuple(int(r) for r in feature_rows), tuple(side_hidden)
        if not features or len(features) != len(feature_rows) or min(feature_rows) < 1:
            raise ValueError(f"task_embedding: need one row count >= 1 per feature, got {features} / {feature_rows}")
        if embedding_dim < 1 or any(w < 1 for w in side_hidden):
            raise ValueError(f"task_embedding: embedding_dim and side_hidden widths must be >= 1, got "
                             f"{embedding_dim} / {side_hidden}")
        super().__init__(inner=inner, features=features, feature_rows=feature_rows, num_dense=num_dense,
                         embedding_dim=embedding_dim, side_hidden=side_hidden, init_std=init_std)
        self.inner = build_head(inner)
        self.reads, self.constants = self.inner.reads, self.inner.constants
        self.features = features
        self.register_buffer("row_offsets", torch.tensor([0, *feature_rows[:-1]], dtype=torch.int64).cumsum(0),
                             persistent=False)
        self.table = nn.EmbeddingBag(sum(feature_rows), embedding_dim, mode="mean")
        nn.init.normal_(self.table.weight, 0.0, init_std)
        layers: list[nn.Module] = []
        width = len(features) * embedding_dim + num_dense
        for hidden in side_hidden:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        last = nn.Linear(width, 1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.side = nn.Sequential(*layers, last)
        self._order: tuple[tuple[str, ...], list[int] | None] | None = None

    def _features_of(self, kjt: KeyedJaggedTensor) -> KeyedJaggedTensor:
        """The KJT restricted to (and ordered as) this head's features."""
        keys = tuple(kjt.keys())
        if self._order is None or self._order[0] != keys:
            missing = [f for f in self.features if f not in keys]
            if missing:
                raise KeyError(f"task_embedding head: sparse feature {missing[0]!r} is not in the input")
            self._order = (keys, None if keys == self.features else [keys.index(f) for f in self.features])
        return kjt if self._order[1] is None else kjt.permute(self._order[1])

    def side_input(self, reps: dict[str, torch.Tensor]) -> torch.Tensor:
        """[B, F * embedding_dim + num_dense]: the own tables' pooled embeddings and the dense features."""
        kjt = self._features_of(reps[RAW_SPARSE])
        b, f = kjt.stride(), len(self.features)
        per_key = torch.tensor(kjt.length_per_key(), dtype=torch.int64)
        ids = kjt.values().to(torch.int64) + self.row_offsets.repeat_interleave(per_key)
        offsets = torch.zeros(b * f, dtype=torch.int64)
        offsets[1:] = kjt.lengths().to(torch.int64).cumsum(0)[:-1]
        pooled = self.table(ids, offsets).view(f, b, -1).transpose(0, 1).reshape(b, -1)
        return torch.cat([pooled, reps[RAW_DENSE].to(pooled.dtype)], dim=1)

    def side_logit(self, reps: dict[str, torch.Tensor]) -> torch.Tensor:
        """The own tables' logit [B]."""
        return self.side(self.side_input(reps)).squeeze(-1)

    def forward(self, reps: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.inner(reps) + self.side_logit(reps)

    def shared_logit(self, reps: dict[str, torch.Tensor]) -> torch.Tensor:
        """The inner head's shared-only logit (MPT-Rec's auxiliary term)."""
        return self.inner.shared_logit(reps)


def task_embedding_head(inner: TaskHead, features: list[dict[str, Any]], num_dense: int,
                        **options: Any) -> TaskEmbeddingHead:
    """Wrap `inner` (its weights kept) with own tables over `features` ({"name", "num_embeddings"} specs, as the
    backbone's tables); the side part is initialized from torch's current seed."""
    head = TaskEmbeddingHead(inner.spec(), tuple(f["name"] for f in features),
                             tuple(int(f["num_embeddings"]) for f in features), num_dense, **options)
    head.inner.load_state_dict(inner.state_dict())
    return head
