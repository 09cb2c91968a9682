"""What stays frozen while a task is added: no-grad scopes, parameter counts and per-element gradient masks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters in a module (shared tensors counted once)."""
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())


@contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """Run `module` in eval mode with requires_grad off, restoring both afterwards (so nothing can train it)."""
    was_training = module.training
    flags = [(p, p.requires_grad) for p in module.parameters()]
    module.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        module.train(was_training)


class GradientMasks:
    """Per-element 0/1 masks multiplied into gradients before the optimizer step (Child-Tuning, PECL)."""

    def __init__(self, masks: dict[str, torch.Tensor], params: dict[str, nn.Parameter]) -> None:
        self.masks = {name: m.to(params[name].dtype) for name, m in masks.items() if bool(m.any())}
        self.params = {name: params[name] for name in self.masks}

    @property
    def selected(self) -> int:
        """How many parameter elements may change."""
        return int(sum(m.sum().item() for m in self.masks.values()))

    def parameters(self) -> list[nn.Parameter]:
        """The parameters holding at least one selected element."""
        return list(self.params.values())

    def apply(self) -> None:
        """Zero the gradient of every element outside its mask."""
        for name, p in self.params.items():
            if p.grad is not None:
                p.grad.mul_(self.masks[name])


def top_fraction_masks(scores: dict[str, torch.Tensor], fraction: float) -> dict[str, torch.Tensor]:
    """Boolean masks keeping the `fraction` highest-scoring elements across all tensors (a global threshold)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    flat = torch.cat([s.reshape(-1) for s in scores.values()])
    keep = max(1, int(round(fraction * flat.numel())))
    threshold = torch.topk(flat, keep, sorted=True).values[-1]
    masks = {name: s >= threshold for name, s in scores.items()}
    excess = int(sum(m.sum().item() for m in masks.values())) - keep
    if excess > 0:
        for name, s in scores.items():
            ties = (s == threshold) & masks[name]
            drop = min(excess, int(ties.sum().item()))
            if drop:
                idx = ties.reshape(-1).nonzero().squeeze(1)[:drop]
                masks[name].view(-1)[idx] = False
                excess -= drop
            if excess == 0:
                break
    return masks
