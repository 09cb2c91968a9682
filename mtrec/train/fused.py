"""Swap TorchRec EmbeddingBagCollections for FBGEMM fused-optimizer ones for training, and back afterwards.

The fused module (TorchRec `FusedEmbeddingBagCollection`, FBGEMM table-batched kernels) applies the
embedding optimizer inside backward, so the tables never materialize dense gradients. The canonical model
keeps plain EBCs, so saving, prediction and sharding see one representation.
"""

from __future__ import annotations

import torch
from torch import nn
from torchrec import EmbeddingBagCollection
from torchrec.modules.fused_embedding_modules import FusedEmbeddingBagCollection
from torchrec.optim import RowWiseAdagrad

from pretrain_stack.errors import ConfigError

OPTIMIZERS = {"adagrad": torch.optim.Adagrad, "rowwise_adagrad": RowWiseAdagrad, "sgd": torch.optim.SGD}


def _children_of_type(root: nn.Module, kind: type) -> list[tuple[nn.Module, str, nn.Module]]:
    found = []
    for parent in root.modules():
        for name, child in parent.named_children():
            if isinstance(child, kind):
                found.append((parent, name, child))
    return found


def fuse_embeddings(network: nn.Module, optimizer: str, lr: float) -> list[FusedEmbeddingBagCollection]:
    """Replace every trainable EBC in `network` with a fused one holding the same weights; return the fused ones."""
    fused_modules = []
    for parent, name, ebc in _children_of_type(network, EmbeddingBagCollection):
        if not any(p.requires_grad for p in ebc.parameters()):
            continue
        for config in ebc.embedding_bag_configs():
            if config.embedding_dim % 4:
                key = f"embedding_dims.{config.name.removeprefix('t_')}"
                raise ConfigError(f"{key}: table {config.name} is {config.embedding_dim} wide; FBGEMM's fused "
                                  "training kernels need a multiple of 4 (set embedding_dim / embedding_dims)", key=key)
        fused = FusedEmbeddingBagCollection(ebc.embedding_bag_configs(), optimizer_type=OPTIMIZERS[optimizer],
                                            optimizer_kwargs={"lr": lr}, device=torch.device("cpu"))
        with torch.no_grad():
            for table, bag in ebc.embedding_bags.items():
                fused.embedding_bags[table].weight.copy_(bag.weight)
        setattr(parent, name, fused)
        fused_modules.append(fused)
    return fused_modules


def unfuse_embeddings(network: nn.Module) -> None:
    """Replace every fused EBC with a plain TorchRec EBC holding the trained weights."""
    for parent, name, fused in _children_of_type(network, FusedEmbeddingBagCollection):
        ebc = EmbeddingBagCollection(fused.embedding_bag_configs(), device=torch.device("cpu"))
        with torch.no_grad():
            for table, bag in fused.embedding_bags.items():
                ebc.embedding_bags[table].weight.copy_(bag.weight)
        setattr(parent, name, ebc)


def fused_parameter_ids(network: nn.Module) -> set[int]:
    """ids of parameters owned by fused modules (the dense optimizer must skip them)."""
    ids: set[int] = set()
    for _, _, fused in _children_of_type(network, FusedEmbeddingBagCollection):
        ids.update(id(p) for p in fused.parameters())
    return ids
