"""New-task baselines that move the backbone: finetune, child_tuning, pecl, and `joint` retraining from scratch.

- finetune: every parameter trains on the new task's loss (how much the old tasks are damaged).
- child_tuning: Child-Tuning_D (Xu et al., EMNLP 2021): the Fisher information of the new task's loss picks
  a child network (the `reserve_p` share of backbone elements with the largest Fisher); gradients of every
  other element are masked to zero.
- pecl: parameter-efficient continual learning: the `fraction` of backbone elements most important to the new
  task (Fisher of its loss) is selected offline; only those and the head train, with an EWC penalty
  `ewc_lambda * sum_i F_old_i (theta_i - theta*_i)^2` weighted by the old tasks' Fisher (labels sampled from
  the model's own predictions, so old labels are not needed), normalized to mean 1.
- joint: a fresh model with the same recipe trained on old + new tasks (the costly reference).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mtrec.data.batches import Batch, EncodedFrame
from mtrec.model import MultiTaskModel
from mtrec.tasks.fit import FitConfig, FitResult, fit_backbone, network_logit
from mtrec.tasks.freezing import GradientMasks, count_parameters, top_fraction_masks
from mtrec.models.heads import TaskHead
from mtrec.models.inputs import run_network
from mtrec.train.loop import TrainResult
from mtrec.train.loop import train as train_model


def backbone_parameters(network: nn.Module) -> dict[str, nn.Parameter]:
    """The network's own trainable parameters (heads of earlier added tasks excluded: they stay frozen)."""
    return {n: p for n, p in network.named_parameters() if p.requires_grad and not n.startswith("task_heads.")}


def fisher_information(params: dict[str, nn.Parameter], loss_of: Callable[[Batch], torch.Tensor],
                       encoded: EncodedFrame, batch_size: int, max_batches: int | None = None,
                       progress: bool = False, desc: str = "fisher") -> dict[str, torch.Tensor]:
    """Diagonal Fisher estimate: per element, the mean over batches of the squared gradient of `loss_of(batch)`."""
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    count = encoded.num_batches(batch_size)
    count = count if max_batches is None else min(max_batches, count)
    batches = encoded.batches(batch_size, shuffle=True, seed=12345)
    for _, batch in tqdm(zip(range(count), batches), total=count, desc=desc, disable=not progress, leave=False):
        grads = torch.autograd.grad(loss_of(batch), list(params.values()), allow_unused=True)
        for (n, _), g in zip(params.items(), grads):
            if g is not None:
                total[n] += g.detach() ** 2
    return {n: t / max(count, 1) for n, t in total.items()}


def new_task_loss(network: nn.Module, head: TaskHead) -> Callable[[Batch], torch.Tensor]:
    """BCE of the new task's logit through the backbone."""
    return lambda b: F.binary_cross_entropy_with_logits(network_logit(network, head, b), b.labels[:, -1])


def old_tasks_loss(network: nn.Module, seed: int) -> Callable[[Batch], torch.Tensor]:
    """BCE of the model's current tasks against labels sampled from its own predictions (true Fisher, no labels)."""
    generator = torch.Generator().manual_seed(seed)

    def loss(batch: Batch) -> torch.Tensor:
        logits = run_network(network, batch)["logits"]
        sampled = torch.bernoulli(torch.sigmoid(logits.detach()), generator=generator)
        return F.binary_cross_entropy_with_logits(logits, sampled, reduction="sum") / len(batch)

    return loss


def finetune(network: nn.Module, head: TaskHead, train: EncodedFrame, valid: EncodedFrame | None, cfg: FitConfig,
             progress: bool = False) -> tuple[FitResult, int]:
    """Every backbone parameter and the head train on the new task's loss."""
    params = backbone_parameters(network)
    result = fit_backbone(network, head, list(params.values()), train, valid, cfg, progress=progress, desc="finetune")
    return result, sum(p.numel() for p in params.values()) + count_parameters(head)


def child_tuning(network: nn.Module, head: TaskHead, train: EncodedFrame, valid: EncodedFrame | None,
                 cfg: FitConfig, reserve_p: float = 0.2, fisher_batches: int | None = None,
                 progress: bool = False) -> tuple[FitResult, int]:
    """Child-Tuning_D: train the head and the top-`reserve_p` Fisher child network of the backbone."""
    params = backbone_parameters(network)
    network.eval()
    scores = fisher_information(params, new_task_loss(network, head), train, cfg.batch_size, fisher_batches,
                                progress, desc="child-tuning fisher")
    masks = GradientMasks(top_fraction_masks(scores, reserve_p), params)
    result = fit_backbone(network, head, masks.parameters(), train, valid, cfg, masks=masks, progress=progress,
                          desc="child_tuning")
    return result, masks.selected + count_parameters(head)


def pecl(network: nn.Module, head: TaskHead, train: EncodedFrame, valid: EncodedFrame | None, cfg: FitConfig,
         fraction: float = 0.05, ewc_lambda: float = 1.0, fisher_batches: int | None = None,
         progress: bool = False) -> tuple[FitResult, int]:
    """PECL: the `fraction` of backbone elements most important to the new task train with an EWC penalty."""
    params = backbone_parameters(network)
    network.eval()
    new = fisher_information(params, new_task_loss(network, head), train, cfg.batch_size, fisher_batches, progress,
                             desc="pecl new-task fisher")
    masks = GradientMasks(top_fraction_masks(new, fraction), params)
    old = fisher_information(params, old_tasks_loss(network, cfg.seed), train, cfg.batch_size, fisher_batches,
                             progress, desc="pecl old-task fisher")
    scale = torch.cat([f.reshape(-1) for f in old.values()]).mean().clamp_min(1e-12)
    weights = {n: old[n] / scale * m for n, m in masks.masks.items()}
    anchors = {n: p.detach().clone() for n, p in masks.params.items()}

    def penalty() -> torch.Tensor:
        terms = [(weights[n] * (p - anchors[n]) ** 2).sum() for n, p in masks.params.items()]
        return ewc_lambda * torch.stack(terms).sum()

    result = fit_backbone(network, head, masks.parameters(), train, valid, cfg, masks=masks, penalty=penalty,
                          progress=progress, desc="pecl")
    return result, masks.selected + count_parameters(head)


def joint(model: MultiTaskModel, name: str, train_df: pd.DataFrame, valid: pd.DataFrame | None, seed: int,
          progress: bool = False, **train_options: Any) -> tuple[MultiTaskModel, TrainResult]:
    """A fresh model of the same backbone and recipe trained from scratch on the model's tasks plus `name`."""
    fresh = MultiTaskModel(model.name, model.schema, [*model.tasks, name], model.recipe)
    result = train_model(fresh, train_df, valid=valid, progress=progress, seed=seed, **train_options)
    return fresh, result
