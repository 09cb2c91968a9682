"""Sharpness-aware (SAM / ASAM) steps on the dense parameters, and the flatness statistics they leave behind.

A step (two passes): the dense gradient g at w (the embedding output detached, so the fused tables do not move),
the perturbation e (FlatnessConfig), a full forward/backward at w + e (the fused tables take their one update in
this backward, as in a plain step), w restored, and the dense optimizer steps with the gradient from w + e.

Flatness statistics: per dense element, the mean over sharpness-aware steps of |e_i * g'_i| (g' the gradient at
w + e), the element's first-order share of the loss rise inside the perturbation radius. Large values mark
elements the loss is sensitive to around the minimum found; `add_task(method="cnf")` reads them as importance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mtrec.data.batches import Batch
from mtrec.models.inputs import bf16_autocast, network_inputs
from mtrec.recipe import FlatnessConfig


def perturbation(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None],
                 cfg: FlatnessConfig) -> list[torch.Tensor]:
    """e per parameter: rho * g / ||g||, or ASAM's rho * T^2 g / ||T g|| with T = |w| + eta (zeros where g is None)."""
    grads = [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(params, grads)]
    if cfg.adaptive:
        scales = [p.detach().abs() + cfg.eta for p in params]
        norm = torch.sqrt(sum((s * g).pow(2).sum() for s, g in zip(scales, grads)))
        return [cfg.rho * s.pow(2) * g / (norm + 1e-12) for s, g in zip(scales, grads)]
    norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
    return [cfg.rho * g / (norm + 1e-12) for g in grads]


class FlatnessStats:
    """Running mean of |e * g'| per element of named parameters (see the module docstring)."""

    def __init__(self, params: dict[str, nn.Parameter]) -> None:
        self.sums = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
        self.steps = 0

    def add(self, names: Sequence[str], eps: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None]) -> None:
        """One sharpness-aware step's |e * g'|."""
        for n, e, g in zip(names, eps, grads):
            if g is not None:
                self.sums[n].add_((e * g.detach()).abs().float())
        self.steps += 1

    def means(self) -> dict[str, torch.Tensor]:
        """Per-element means over the steps taken (zeros when none were)."""
        return {n: s / max(self.steps, 1) for n, s in self.sums.items()}


def sharpness_aware_backward(params: Sequence[torch.Tensor], names: Sequence[str], loss_at_w: Callable[[], torch.Tensor],
                             loss_at_perturbed: Callable[[], torch.Tensor], cfg: FlatnessConfig,
                             stats: FlatnessStats | None = None) -> torch.Tensor:
    """The two passes of a sharpness-aware step: g = d loss_at_w / d params, w += e, loss_at_perturbed().backward()
    (gradients accumulate into .grad as usual), w -= e, |e * g'| into `stats`. Returns loss_at_w's value; the caller
    zeroes gradients before and steps its optimizers after."""
    loss = loss_at_w()
    grads = torch.autograd.grad(loss, list(params), allow_unused=True)
    with torch.no_grad():
        eps = perturbation(params, grads, cfg)
        for p, e in zip(params, eps):
            p.add_(e)
    try:
        loss_at_perturbed().backward()
    finally:
        with torch.no_grad():
            for p, e in zip(params, eps):
                p.sub_(e)
    if stats is not None:
        stats.add(names, eps, [p.grad for p in params])
    return loss.detach()


@dataclass
class FlatTraining:
    """What a training loop needs to make its steps sharpness-aware: the settings, the parameters perturbed (by
    name) and where their flatness statistics go."""

    cfg: FlatnessConfig
    params: dict[str, nn.Parameter]
    stats: FlatnessStats

    @classmethod
    def of(cls, cfg: FlatnessConfig, params: dict[str, nn.Parameter]) -> FlatTraining:
        """Sharpness-aware training of `params`, statistics starting empty."""
        return cls(cfg, dict(params), FlatnessStats(params))

    def backward(self, loss_of: Callable[[], torch.Tensor]) -> torch.Tensor:
        """sharpness_aware_backward with the same loss at w and at w + e."""
        return sharpness_aware_backward(list(self.params.values()), list(self.params), loss_of, loss_of, self.cfg,
                                        self.stats)


class SharpnessAwareStep:
    """The training step of `train(..., flatness=...)`: every `cfg.every`-th step sharpness-aware, the others
    through `plain` (the loop's ordinary step)."""

    def __init__(self, network: nn.Module, optimizer: torch.optim.Optimizer, params: dict[str, nn.Parameter],
                 cfg: FlatnessConfig, progress: Callable[[], float], plain: Callable[[Batch], torch.Tensor],
                 autocast_bf16: bool = False) -> None:
        if getattr(network, "decoder", None) is not None:
            raise ValueError("train.flatness supports encoder-only networks")
        self.network, self.optimizer, self.cfg = network, optimizer, cfg
        self.names, self.params = list(params), list(params.values())
        self.progress, self.plain, self.bf16 = progress, plain, autocast_bf16
        self.stats = FlatnessStats(params)
        self.calls = 0

    def __call__(self, batch: Batch) -> torch.Tensor:
        self.calls += 1
        if (self.calls - 1) % self.cfg.every:
            return self.plain(batch)
        inputs = network_inputs(batch, labels=True, progress=self.progress())

        def dense_only() -> torch.Tensor:  # the tables' output detached: their fused update happens once, below
            with bf16_autocast(self.bf16):
                with torch.no_grad():
                    emb = self.network.embedding(inputs)
                return self.network.target(self.network.encoder(emb, inputs), inputs)["loss"]

        def full() -> torch.Tensor:
            with bf16_autocast(self.bf16):
                return self.network(inputs)["loss"]

        self.optimizer.zero_grad(set_to_none=True)
        loss = sharpness_aware_backward(self.params, self.names, dense_only, full, self.cfg, self.stats)
        self.optimizer.step()
        return loss
