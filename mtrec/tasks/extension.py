"""Attach a trained new-task head to a model, so it predicts, evaluates, saves and loads with the new task.

The heads live in `network.task_heads` (so their weights are in the network's state_dict) and run from a
forward hook on the encoder: after the encoder's own forward has produced the old tasks' logits (untouched,
so they stay bit-identical), the hook computes the encoder's representations of the same input and appends
one logit per added task. The hook is a bound method of the heads module, so deep copies stay consistent.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mtrec.model import MultiTaskModel
from mtrec.tasks.heads import TaskHead, build_head


class TaskHeads(nn.Module):
    """Heads of tasks added after pre-training, in the order they were added."""

    def __init__(self) -> None:
        super().__init__()
        self.heads = nn.ModuleDict()

    def extend_output(self, encoder: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        """Forward hook: append the added tasks' logits (and shared-only logits, if the encoder gives them)."""
        if not len(self.heads) or not isinstance(output, dict):
            return output
        reps = encoder.representations(args[0])
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


def _extend_target(target: nn.Module, name: str) -> None:
    """Give the network's loss a weight (1.0) and a name for the new task, so labelled forwards still work."""
    weights = getattr(target, "weights", None)
    if isinstance(weights, torch.Tensor):
        target.weights = torch.cat([weights, weights.new_ones(1)])
    if isinstance(getattr(target, "tasks", None), list):
        target.tasks.append(name)


def attach_task(model: MultiTaskModel, name: str, head: TaskHead, entry: dict[str, Any]) -> None:
    """Make `head` the model's predictor of task `name` and record `entry` (with "task") in model.extensions."""
    network = model.require_network()
    head.eval()
    for p in head.parameters():
        p.requires_grad_(False)
    task_heads(network).heads[name] = head
    _extend_target(network.target, name)
    model.tasks.append(name)
    model.schema = model.schema.with_tasks(model.tasks)
    model.extensions.append({**entry, "task": name, "head": head.spec()})


def restore_extension(model: MultiTaskModel, extension: dict[str, Any]) -> None:
    """Rebuild an added task's head from its model.extensions entry (weights are loaded afterwards)."""
    try:
        name, spec = extension["task"], extension["head"]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"model extension {extension!r} lacks 'task' or 'head'") from exc
    attach_task(model, name, build_head(spec), {k: v for k, v in extension.items() if k not in ("task", "head")})
