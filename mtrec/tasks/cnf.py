"""`cnf`: C&F ("Create and Find Flatness") continual task addition, on pecl's machinery.

- Create: pre-training with `train(..., flatness={...})` makes the minimum flat (sharpness-aware steps), and the
  cnf fit itself trains sharpness-aware, so a flat region is prepared for the addition after this one.
- Find: each backbone element's importance to the tasks the model already has is its flatness statistic,
  mean |e_i * g'_i| over sharpness-aware steps (mtrec.train.flatness): the model's stored statistics where it has
  them (pre-training, earlier cnf additions); for elements without (tables trained by the fused optimizer, a
  model trained without flatness) `probe_batches` sharpness-aware probes of the old tasks' loss on labels sampled
  from the model's own predictions (as pecl's Fisher: old labels are not needed). Each source is normalized to
  mean 1.
- Constrain: the `fraction` of backbone elements with the highest new-task Fisher per unit of old-task
  importance, F_new / (I_old + 1), train (GradientMasks, as pecl), with the penalty
  `cnf_lambda * sum_i I_old_i (theta_i - theta*_i)^2`. Defaults: every element (fraction 1.0) under
  cnf_lambda 0.01. On Adult (education, 3 seeds, 5 epochs, SAM pre-training) that gave new-task AUC 0.8676 with
  the old tasks' AUC -0.0028 on average, against pecl with a weak Fisher penalty (fraction 1, ewc_lambda 0.001)
  0.8681 / -0.0082 and finetune 0.8710 / -0.0824; cnf_lambda 0.001: 0.8712 / -0.0223. Fraction 0.05 with
  lambda 1 (pecl's defaults) pins the old tasks (|change| < 1e-4) at 0.856 (benchmarks/continual.py; README).
- Afterwards the model keeps I_old + I_new (the new task's statistics from the fit, normalized to mean 1) for the
  next addition.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from mtrec.data.batches import Batch, EncodedFrame
from mtrec.models.heads import TaskHead
from mtrec.recipe import FlatnessConfig
from mtrec.tasks.baselines import backbone_parameters, fisher_information, new_task_loss, old_tasks_loss
from mtrec.tasks.fit import FitConfig, FitResult, fit_backbone
from mtrec.tasks.freezing import GradientMasks, count_parameters, top_fraction_masks
from mtrec.train.flatness import FlatnessStats, FlatTraining, perturbation


def probe_flatness(params: dict[str, nn.Parameter], loss_of: Callable[[Batch], torch.Tensor], encoded: EncodedFrame,
                   batch_size: int, cfg: FlatnessConfig, max_batches: int | None = None,
                   progress: bool = False) -> dict[str, torch.Tensor]:
    """Flatness statistics of `params` from sharpness-aware probes (both passes, no update) over batches."""
    stats = FlatnessStats(params)
    names, tensors = list(params), list(params.values())
    count = encoded.num_batches(batch_size)
    count = count if max_batches is None else min(max_batches, count)
    batches = encoded.batches(batch_size, shuffle=True, seed=54321)
    for _, batch in tqdm(zip(range(count), batches), total=count, desc="cnf flatness", disable=not progress,
                         leave=False):
        grads = torch.autograd.grad(loss_of(batch), tensors, allow_unused=True)
        with torch.no_grad():
            eps = perturbation(tensors, grads, cfg)
            for p, e in zip(tensors, eps):
                p.add_(e)
        try:
            perturbed = torch.autograd.grad(loss_of(batch), tensors, allow_unused=True)
        finally:
            with torch.no_grad():
                for p, e in zip(tensors, eps):
                    p.sub_(e)
        stats.add(names, eps, perturbed)
    return stats.means()


def mean_one(stats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The statistics scaled to mean 1 over all their elements (sources of different scale become comparable)."""
    if not stats:
        return {}
    mean = torch.cat([s.reshape(-1) for s in stats.values()]).mean().clamp_min(1e-12)
    return {n: s / mean for n, s in stats.items()}


def old_importance(network: nn.Module, params: dict[str, nn.Parameter], stored: dict[str, torch.Tensor],
                   train: EncodedFrame, batch_size: int, cfg: FlatnessConfig, seed: int, probe_batches: int | None,
                   progress: bool) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Per-element importance to the model's current tasks (stored statistics, probes for the rest), and how
    many elements came from each source."""
    known = {n: stored[n] for n in params if n in stored}
    missing = {n: p for n, p in params.items() if n not in known}
    probed = probe_flatness(missing, old_tasks_loss(network, seed), train, batch_size, cfg, probe_batches,
                            progress) if missing else {}
    importance = {**mean_one(known), **mean_one(probed)}
    return importance, {"stored": sum(v.numel() for v in known.values()),
                        "probed": sum(v.numel() for v in probed.values())}


def cnf(network: nn.Module, head: TaskHead, train: EncodedFrame, valid: EncodedFrame | None, cfg: FitConfig,
        stored: dict[str, torch.Tensor], fraction: float = 1.0, cnf_lambda: float = 0.01, rho: float = 0.05,
        adaptive: bool = False, probe_batches: int | None = 20, fisher_batches: int | None = None,
        progress: bool = False) -> tuple[FitResult, int, dict[str, torch.Tensor], dict[str, int]]:
    """C&F: train the head and the selected backbone elements sharpness-aware under the importance penalty.
    Returns the fit, the trainable count, the statistics to keep for the next addition and the sources' sizes."""
    flatness = FlatnessConfig.from_value({"rho": rho, "adaptive": adaptive}, where="add_task(method='cnf')")
    params = backbone_parameters(network)
    network.eval()
    importance, sources = old_importance(network, params, stored, train, cfg.batch_size, flatness, cfg.seed,
                                         probe_batches, progress)
    new = fisher_information(params, new_task_loss(network, head), train, cfg.batch_size, fisher_batches, progress,
                             desc="cnf new-task fisher")
    masks = GradientMasks(top_fraction_masks({n: new[n] / (importance[n] + 1.0) for n in params}, fraction), params)
    weights = {n: importance[n] * m for n, m in masks.masks.items()}
    anchors = {n: p.detach().clone() for n, p in masks.params.items()}

    def penalty() -> torch.Tensor:
        terms = [(weights[n] * (p - anchors[n]) ** 2).sum() for n, p in masks.params.items()]
        return cnf_lambda * torch.stack(terms).sum()

    flat = FlatTraining.of(flatness, params)
    result = fit_backbone(network, head, masks.parameters(), train, valid, cfg, masks=masks, penalty=penalty,
                          progress=progress, desc="cnf", flat=flat)
    learned = mean_one(flat.stats.means())
    keep = {n: importance[n] + learned[n] for n in params}
    return result, masks.selected + count_parameters(head), keep, sources
