"""Where the heads of tasks added after pre-training live inside a network, and how they join its output.

The heads live in `network.task_heads` (so their weights are in the network's state_dict) and run from a
forward hook on the encoder: after the encoder's own forward has produced the old tasks' logits (untouched,
so they stay bit-identical), the hook reads the representations that forward computed on the way (its output's
"representations"; an encoder without them has them recomputed) and appends one logit per added task, so the
experts run once per forward however many tasks were added. Heads with `raw_inputs` also get the network's raw
input (the encoder's second argument) under RAW_SPARSE / RAW_DENSE. The hook is a bound method of the heads module, so deep copies stay consistent.
`MultiTaskModel.attach_task` is the one caller that wires a head in, `remove_task` the one that takes it out.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mtrec.models.heads import raw_inputs


class TaskHeads(nn.Module):
    """Heads of tasks added after pre-training, in the order they were added."""

    def __init__(self) -> None:
        super().__init__()
        self.heads = nn.ModuleDict()

    def extend_output(self, encoder: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        """Forward hook: append the added tasks' logits (and shared-only logits, if the encoder gives them)."""
        if not len(self.heads) or not isinstance(output, dict):
            return output
        reps = output.get("representations")
        if reps is None:
            reps = encoder.representations(args[0])
        if len(args) > 1 and any(h.raw_inputs for h in self.heads.values()):
            reps = {**reps, **raw_inputs(args[1])}
        out = dict(output)
        out["logits"] = torch.cat([output["logits"], *(h(reps).unsqueeze(1) for h in self.heads.values())], dim=1)
        if "shared_logits" in output:
            extra = [h.shared_logit(reps).unsqueeze(1) for h in self.heads.values()]
            out["shared_logits"] = torch.cat([output["shared_logits"], *extra], dim=1)
        return out


def task_heads(network: nn.Module) -> TaskHeads:
    """The network's TaskHeads, created (and hooked onto its encoder) on first use."""
    heads = getattr(network, "task_heads", None)
    if heads is None:
        heads = TaskHeads()
        network.task_heads = heads
        network.encoder.register_forward_hook(heads.extend_output)
    return heads


def extend_target(target: nn.Module, name: str) -> None:
    """Give the network's loss a weight (1.0) and a name for the new task, so labelled forwards still work."""
    weights = getattr(target, "weights", None)
    if isinstance(weights, torch.Tensor):
        target.weights = torch.cat([weights, weights.new_ones(1)])
    if isinstance(getattr(target, "tasks", None), list):
        target.tasks.append(name)


def shrink_target(target: nn.Module, index: int) -> None:
    """Drop task `index`'s loss weight and name from the network's loss (undoes `extend_target` for that task)."""
    weights = getattr(target, "weights", None)
    if isinstance(weights, torch.Tensor):
        target.weights = torch.cat([weights[:index], weights[index + 1:]])
    if isinstance(getattr(target, "tasks", None), list):
        del target.tasks[index]
