"""`sequence`: a user's ordered behaviour history encoded by a pretrain_stack transformer into one user vector.

The history (a schema sequence feature, oldest first, at most max_len newest items) and its optional parallel
action column (e.g. the rating given) are looked up unpooled in a TorchRec `EmbeddingCollection`; the item table
is shared with the candidate-item feature (`shared_with`), so the candidate and the history live in one space.
Item + action + position embeddings (right-padded to max_len, positions 0.. from the oldest kept item, as
`pretrain_stack.pretrain` trains them) run through pretrain_stack's `TransformerEncoder` (causal or
bidirectional) and are pooled by `last` (the newest position), `mean` (over real positions) or
`target_attention` (DIN: an MLP scores [q, h, q - h, q * h] for the candidate q against each position h; the
sigmoid of the score weights h, summed over real positions without normalizing, so how strongly the history
matches the candidate survives the pooling, as in DIN). The [B, hidden_size] vector joins the backbone's input beside the other parts.

`pretrained: DIR` loads an encoder saved by `python -m pretrain_stack.pretrain` (or `mtrec pretrain`): its
architecture must match this part's settings, its item rows are mapped onto mtrec's vocabulary through the
saved `items.json` (items it lacks keep fresh rows), weights load with `torch.load(weights_only=True)`.
`freeze: true` keeps the pretrained item table, positions and encoder fixed (the action table and the pooling
still train). The model calls `load_pretrained` once when it builds a fresh network; a checkpoint rebuilds the
part without reading DIR and loads its own weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torchrec import EmbeddingCollection, EmbeddingConfig

from pretrain_stack.embeddings.sparse_features import normal_init
from pretrain_stack.encoders.mlp import mlp_layers
from pretrain_stack.encoders.transformer import TransformerEncoder
from pretrain_stack.errors import ConfigError
from pretrain_stack.pretrain import ITEMS_FILE
from pretrain_stack.registry import EMBEDDINGS, read_component_config, read_component_weights

POOLINGS = ("last", "mean", "target_attention")
WHERE = "model.embedding.sequence"


def sequence_specs(schema: Any, vocabs: Any) -> list[dict[str, Any]]:
    """Per schema sequence: name, max_len, rows of its item table (the shared feature's), candidate, actions and
    the action table's rows; the build context of the `sequence` part."""
    out = []
    for name, seq in schema.sequences.items():
        spec = {"name": name, "max_len": seq.max_len,
                "num_embeddings": vocabs.num_embeddings(schema.vocabulary_of(name)),
                "candidate": seq.shared_with, "actions": seq.actions, "num_actions": 0}
        if seq.actions is not None:
            spec["num_actions"] = vocabs.num_embeddings(seq.actions)
        out.append(spec)
    return out


@EMBEDDINGS.register("sequence")
class SequenceEmbedding(nn.Module):
    """Transformer over one sequence feature of `batch[input_key]` (a KJT), pooled to [B, hidden_size]."""

    def __init__(self, sequences: list[dict], feature: str | None = None, hidden_size: int = 64, layers: int = 2,
                 heads: int = 2, ff_size: int = 0, dropout: float = 0.1, causal: bool = True,
                 activation: str = "gelu", pooling: str = "last", attention_hidden: tuple[int, ...] = (64,),
                 pretrained: str | None = None, freeze: bool = False, input_key: str = "sparse",
                 init_std: float = 0.02) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"{WHERE}.pooling: expected one of {', '.join(POOLINGS)}, got {pooling!r}",
                              key=f"{WHERE}.pooling")
        spec = _pick(sequences, feature)
        if pooling == "target_attention" and not spec["candidate"]:
            raise ConfigError(f"{WHERE}.pooling: target_attention needs the sequence {spec['name']!r} to share its "
                              "table with a candidate feature (schema sequences shared_with)", key=f"{WHERE}.pooling")
        if freeze and not pretrained:
            raise ConfigError(f"{WHERE}.freeze: only a pretrained encoder can be frozen (set pretrained: DIR)",
                              key=f"{WHERE}.freeze")
        self.feature, self.candidate, self.actions = spec["name"], spec["candidate"], spec["actions"]
        self.max_len, self.pooling, self.input_key = int(spec["max_len"]), pooling, input_key
        self.pretrained, self.freeze, self.init_std = pretrained, freeze, init_std
        self.arch = {"hidden_size": hidden_size, "layers": layers, "heads": heads, "ff_size": ff_size,
                     "causal": causal, "activation": activation}
        tables = [EmbeddingConfig(name=f"t_{self.feature}", embedding_dim=hidden_size,
                                  num_embeddings=int(spec["num_embeddings"]),
                                  feature_names=[self.feature, *([self.candidate] if self.candidate else [])],
                                  init_fn=normal_init(init_std))]
        if self.actions:
            tables.append(EmbeddingConfig(name=f"t_{self.actions}", embedding_dim=hidden_size,
                                          num_embeddings=int(spec["num_actions"]), feature_names=[self.actions],
                                          init_fn=normal_init(init_std)))
        self.tables = EmbeddingCollection(tables=tables, device=torch.device("cpu"))
        self.position = nn.Embedding(self.max_len, hidden_size)
        nn.init.normal_(self.position.weight, std=init_std)
        self.dropout = nn.Dropout(dropout)
        self.encoder = TransformerEncoder(hidden_size, layers, heads, ff_size, dropout, causal, activation=activation)
        self.attention = _scorer(4 * hidden_size, attention_hidden) if pooling == "target_attention" else None
        self.output_dim = hidden_size
        if freeze:
            self._freeze()

    def item_table(self) -> torch.Tensor:
        """The [rows, hidden] item table shared by the sequence and the candidate."""
        return self.tables.embeddings[f"t_{self.feature}"].weight

    def pretrained_modules(self) -> list[nn.Module]:
        """What a pretrained encoder supplies (and `freeze` fixes): the item table, positions, the encoder."""
        return [self.tables.embeddings[f"t_{self.feature}"], self.position, self.encoder]

    def _freeze(self) -> None:
        for module in self.pretrained_modules():
            for p in module.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> SequenceEmbedding:
        """As nn.Module.train, but a frozen pretrained encoder stays in eval mode (no dropout noise)."""
        super().train(mode)
        if self.freeze:
            for module in self.pretrained_modules():
                module.train(False)
        return self

    def load_pretrained(self, vocabs: Any) -> dict[str, int]:
        """Copy a pretrained encoder from `self.pretrained` (DIR) into this part, mapping its items onto mtrec's
        vocabulary of the shared feature; returns {"mapped": n, "fresh": m} item-row counts."""
        if not self.pretrained:
            return {"mapped": 0, "fresh": 0}
        root = Path(self.pretrained)
        encoder_cfg = read_component_config(root / "encoder", "encoders", WHERE)
        for key, value in self.arch.items():
            if key == "hidden_size" or key not in encoder_cfg:
                continue
            if encoder_cfg[key] != value:
                raise ConfigError(f"{WHERE}.{key}: {value!r} does not match the pretrained encoder in {root} "
                                  f"({encoder_cfg[key]!r})", key=f"{WHERE}.{key}")
        items = read_component_weights(root / "embedding" / "item", WHERE)["table.weight"]
        positions = read_component_weights(root / "embedding" / "position", WHERE)["table.weight"]
        hidden = self.arch["hidden_size"]
        if items.shape[1] != hidden or positions.shape[1] != hidden:
            raise ConfigError(f"{WHERE}.hidden_size: {hidden} does not match the pretrained encoder in {root} "
                              f"({items.shape[1]})", key=f"{WHERE}.hidden_size")
        if positions.shape[0] < self.max_len:
            raise ConfigError(f"{WHERE}: the pretrained encoder in {root} knows {positions.shape[0]} positions, the "
                              f"sequence {self.feature!r} keeps {self.max_len}", key=f"{WHERE}.pretrained")
        tokens = item_rows(_item_ids(root), vocabs.values[self.candidate or self.feature])
        with torch.no_grad():
            table = self.item_table()
            known = np.flatnonzero(tokens > 0)
            rows = torch.from_numpy(known + 1)
            table[rows] = items[torch.from_numpy(tokens[known])].to(table.dtype)
            self.position.weight.copy_(positions[: self.max_len])
            self.encoder.load_state_dict(read_component_weights(root / "encoder", WHERE))
        return {"mapped": int(len(known)), "fresh": int(len(tokens) - len(known))}

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        kjt = batch[self.input_key]
        looked_up = self.tables(kjt)
        seq = looked_up[self.feature]
        lengths = seq.lengths().long()
        b = lengths.shape[0]
        mask = torch.arange(self.max_len, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)
        x = _padded(seq.values(), mask)
        if self.actions:
            x = x + _padded(looked_up[self.actions].values(), mask)
        x = self.dropout(x + self.position.weight.unsqueeze(0))
        h = self.encoder(x, {"src": mask.long()})
        if self.pooling == "last":  # an empty history has no newest position: zeros, as mean and attention give
            has = (lengths > 0).unsqueeze(1).to(h.dtype)
            return h[torch.arange(b, device=h.device), (lengths - 1).clamp(min=0)] * has
        if self.pooling == "mean":
            m = mask.unsqueeze(2).to(h.dtype)
            return (h * m).sum(1) / lengths.clamp(min=1).unsqueeze(1).to(h.dtype)
        q = looked_up[self.candidate].values().unsqueeze(1).expand_as(h)
        weights = torch.sigmoid(self.attention(torch.cat([q, h, q - h, q * h], dim=2)).squeeze(2))
        return ((weights * mask.to(h.dtype)).unsqueeze(2) * h).sum(1)


def item_rows(pretrained_ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each of mtrec's item ids 1..n (raw value `values[i]`), the pretrained token id holding it (0: the
    pretrained vocabulary lacks it); tokens are 1 + the position in `pretrained_ids`."""
    pretrained_ids = np.asarray(pretrained_ids)
    order = np.argsort(pretrained_ids, kind="stable")
    keys = pretrained_ids[order]
    values = np.asarray(values)
    if keys.dtype.kind in "iu" and values.dtype.kind not in "iu":
        return np.zeros(len(values), dtype=np.int64)
    pos = np.minimum(np.searchsorted(keys, values), max(len(keys) - 1, 0))
    hit = (keys[pos] == values) if len(keys) else np.zeros(len(values), dtype=bool)
    return np.where(hit, order[pos] + 1, 0).astype(np.int64)


def _pick(sequences: list[dict], feature: str | None) -> dict:
    """The spec of the named sequence (or the only one)."""
    if not sequences:
        raise ConfigError(f"{WHERE}: the schema has no sequence features (Schema.from_frame(..., sequences=[...]))",
                          key=WHERE)
    if feature is None:
        if len(sequences) > 1:
            raise ConfigError(f"{WHERE}.feature: the schema has sequences {[s['name'] for s in sequences]}; name one",
                              key=f"{WHERE}.feature")
        return sequences[0]
    for s in sequences:
        if s["name"] == feature:
            return s
    raise ConfigError(f"{WHERE}.feature: {feature!r} is not a sequence of the schema "
                      f"({[s['name'] for s in sequences]})", key=f"{WHERE}.feature")


def _padded(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Jagged [N, D] rows laid into a right-padded [B, L, D] tensor (zeros at padding)."""
    out = values.new_zeros(*mask.shape, values.shape[1])
    out[mask] = values
    return out


def _scorer(in_dim: int, hidden: tuple[int, ...]) -> nn.Sequential:
    """The attention scorer: ReLU MLP to one score."""
    return nn.Sequential(*mlp_layers(in_dim, list(hidden)), nn.Linear(hidden[-1] if hidden else in_dim, 1))


def _item_ids(root: Path) -> np.ndarray:
    """The pretrained vocabulary: original item id of token i + 1 (items.json written by pretrain_stack)."""
    path = root / ITEMS_FILE
    if not path.exists():
        raise ConfigError(f"{WHERE}.pretrained: {path} does not exist; the encoder's item vocabulary is needed to "
                          "map its rows onto mtrec's", key=f"{WHERE}.pretrained")
    return np.asarray(json.loads(path.read_text())["item_ids"])
