"""The new-task head interface (which frozen representations a head reads) and the `task_heads` registry that
rebuilds saved heads by name, like every other pretrain_stack component."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pretrain_stack.errors import ConfigError
from pretrain_stack.registry import Registry

HEADS = Registry("task_heads")
RAW_SPARSE, RAW_DENSE = "raw_sparse", "raw_dense"


def raw_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """The network input's raw sparse KJT and dense features under the keys a `raw_inputs` head reads."""
    return {RAW_SPARSE: batch["sparse"], RAW_DENSE: batch["dense"]}


class TaskHead(nn.Module):
    """A trainable head predicting one new task's logit [B] from the frozen backbone's representations.

    `reads` are per-row representation keys (cached for training), `constants` batch-independent ones (e.g. the
    old task prompts); `args` are the constructor arguments, so `build_head(head.spec())` rebuilds the head.
    A head with `raw_inputs` also reads the network's raw input (RAW_SPARSE, RAW_DENSE: see `raw_inputs`).
    Concrete heads are registered with `@HEADS.register(kind)`.
    """

    reads: tuple[str, ...] = ()
    constants: tuple[str, ...] = ()
    raw_inputs: bool = False

    def __init__(self, **args: Any) -> None:
        super().__init__()
        self.args = dict(args)

    @property
    def kind(self) -> str:
        """The name this head's class is registered under in HEADS."""
        return type(self).registered_name  # type: ignore[attr-defined]

    def spec(self) -> dict[str, Any]:
        """{"kind", "args"}: plain data that rebuilds this head (weights come from the checkpoint)."""
        return {"kind": self.kind, "args": {k: list(v) if isinstance(v, tuple) else v for k, v in self.args.items()}}

    def shared_logit(self, reps: dict[str, torch.Tensor]) -> torch.Tensor:
        """The head's tower on the shared representation alone [B] (MPT-Rec's auxiliary shared-only logit)."""
        return self.tower(reps["s"])


def build_head(spec: dict[str, Any]) -> TaskHead:
    """A freshly initialized head from `spec()` output; ConfigError naming the key for an unknown kind or argument."""
    if not isinstance(spec, dict) or not isinstance(spec.get("args", {}), dict):
        raise ConfigError(f"extension head: expected {{'kind', 'args'}}, got {spec!r}", key="extensions.head")
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.get("args", {}).items()}
    head = HEADS.build({"name": spec.get("kind"), **args}, where="extensions.head")
    if not isinstance(head, TaskHead):
        raise ConfigError(f"extensions.head: {spec.get('kind')!r} is not a task head", key="extensions.head")
    return head
