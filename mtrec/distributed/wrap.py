"""DistributedModelParallel around a network: tables sharded by a plan with a fused optimizer, dense part in DDP.

Every table is marked for the embedding optimizer in backward (`apply_optimizer_in_backward`), so sharded tables
run it fused inside FBGEMM. data_parallel tables become plain replicated parameters under DDP; they get the same
embedding optimizer as an ordinary step after DDP's all-reduce. The dense parameters get Adam. All of it sits in
one `CombinedOptimizer`, so a checkpoint holds the whole optimizer state.
"""

from __future__ import annotations


import torch
import torch.distributed as dist
from torch import nn
from torchrec import EmbeddingBagCollection
from torchrec.distributed import DistributedModelParallel
from torchrec.distributed.embeddingbag import ShardedEmbeddingBagCollection
from torchrec.distributed.types import ShardingEnv, ShardingPlan
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizer, KeyedOptimizerWrapper
from torchrec.optim.optimizers import in_backward_optimizer_filter

from mtrec.data.batches import Batch
from mtrec.distributed.sharders import EBCSharder
from mtrec.models.inputs import run_network
from mtrec.train.fused import OPTIMIZERS
from mtrec.train.optim import dense_adam

NETWORK_PREFIX = "network."


class TrainModule(nn.Module):
    """What the train pipeline drives: `forward(Batch) -> (loss, (loss, logits))`.

    `progress` (training progress in [0, 1], for schedules such as MPT-Rec's gradient reversal) is set by the loop
    before each step; `autocast_bf16` runs training forwards under bf16 autocast as the single-process loop does
    (evaluation stays fp32).
    """

    def __init__(self, network: nn.Module, device_type: str = "cpu", autocast_bf16: bool = False) -> None:
        super().__init__()
        self.network = network
        self.progress = 0.0
        self.device_type = device_type
        self.autocast_bf16 = autocast_bf16

    def forward(self, batch: Batch) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        out = run_network(self.network, batch, labels=True, progress=self.progress,
                          bf16=self.autocast_bf16 and self.training, device_type=self.device_type)
        return out["loss"], (out["loss"].detach(), out["logits"].detach())


def move_dense(module: nn.Module, device: torch.device) -> None:
    """Move every submodule that holds no EBC to `device`; tables stay put until DMP places their shards."""
    for child in module.children():
        if any(isinstance(m, EmbeddingBagCollection) for m in child.modules()):
            move_dense(child, device)
        else:
            child.to(device)


def attach_embedding_optimizer(network: nn.Module, optimizer: str, lr: float) -> None:
    """Give every trainable EBC table the embedding optimizer in backward (fused once sharded)."""
    for module in network.modules():
        if isinstance(module, EmbeddingBagCollection):
            params = [p for p in module.parameters() if p.requires_grad]
            if params:
                apply_optimizer_in_backward(OPTIMIZERS[optimizer], params, {"lr": lr})


def shard(network: nn.Module, plan: ShardingPlan, device: torch.device, embedding_optimizer: str,
          embedding_lr: float, pg: dist.ProcessGroup | None = None,
          autocast_bf16: bool = False) -> DistributedModelParallel:
    """Wrap `network` in a TrainModule and DMP with `plan` (planned on the network); its current weights are kept.

    Tables built on the meta device (too big for one worker) are never materialized whole: each worker creates
    and initializes only its own shards.
    """
    state = network.state_dict()
    weights = {NETWORK_PREFIX + k: v for k, v in state.items() if not v.is_meta}
    on_meta = {NETWORK_PREFIX + k for k, v in state.items() if v.is_meta}
    if device.type != "cpu":
        move_dense(network, device)
    attach_embedding_optimizer(network, embedding_optimizer, embedding_lr)
    env = ShardingEnv.from_process_group(pg or dist.group.WORLD)
    wrapped_plan = ShardingPlan({NETWORK_PREFIX + path: p for path, p in plan.plan.items()})
    model = DistributedModelParallel(TrainModule(network, device.type, autocast_bf16), env=env, device=device,
                                     plan=wrapped_plan, sharders=[EBCSharder()])
    loaded = model.load_state_dict(weights, strict=False)
    missing = [k for k in loaded.missing_keys if not any(m == k or m.endswith("." + k) for m in on_meta)]
    if loaded.unexpected_keys or missing:
        raise RuntimeError(f"sharded model does not match the network: missing {missing[:5]}, "
                           f"unexpected {loaded.unexpected_keys[:5]}")
    return model


DENSE_OPTIMIZERS = {"adam": dense_adam, "sgd": torch.optim.SGD}
FBGEMM_EPS = 1e-8


def _table_optimizer_kwargs(embedding_optimizer: str, lr: float) -> dict[str, float]:
    """Settings that make torch's optimizer step a replicated table exactly as FBGEMM's fused kernel does."""
    return {"lr": lr} if embedding_optimizer == "sgd" else {"lr": lr, "eps": FBGEMM_EPS}


def make_optimizer(model: DistributedModelParallel, lr: float, embedding_optimizer: str, embedding_lr: float,
                   weight_decay: float = 0.0, dense_optimizer: str = "adam") -> CombinedOptimizer:
    """One optimizer for everything: fused table updates (from DMP), the embedding optimizer for replicated
    (data_parallel) tables after DDP's all-reduce, and Adam (or SGD) for every other trainable parameter."""
    if dense_optimizer not in DENSE_OPTIMIZERS:
        raise ValueError(f"dense_optimizer: expected one of {', '.join(DENSE_OPTIMIZERS)}, got {dense_optimizer!r}")
    table_params = {id(p) for m in model.modules() if isinstance(m, ShardedEmbeddingBagCollection)
                    for p in m.parameters()}
    unfused = [(k, p) for k, p in in_backward_optimizer_filter(model.named_parameters()) if p.requires_grad]
    replicated = {k: p for k, p in unfused if id(p) in table_params}
    dense = {k: p for k, p in unfused if id(p) not in table_params}
    dense_kind, table_kind = DENSE_OPTIMIZERS[dense_optimizer], OPTIMIZERS[embedding_optimizer]
    table_kwargs = _table_optimizer_kwargs(embedding_optimizer, embedding_lr)
    parts: list[tuple[str, KeyedOptimizer]] = [("embedding", model.fused_optimizer)]
    if replicated:
        parts.append(("replicated_tables", KeyedOptimizerWrapper(
            replicated, lambda params: table_kind(params, **table_kwargs))))
    parts.append(("dense", KeyedOptimizerWrapper(
        dense, lambda params: dense_kind(params, lr=lr, weight_decay=weight_decay))))
    return CombinedOptimizer(parts)


def unwrap_key(key: str) -> str:
    """A DMP state-dict key as the plain network's key (drops the TrainModule prefix)."""
    return key[len(NETWORK_PREFIX):] if key.startswith(NETWORK_PREFIX) else key
