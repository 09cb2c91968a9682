"""The new-task head interface: which frozen representations a head reads, and a registry to rebuild heads."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

HEADS: dict[str, type["TaskHead"]] = {}


class TaskHead(nn.Module):
    """A trainable head predicting one new task's logit [B] from the frozen backbone's representations.

    `reads` are per-row representation keys (cached for training), `constants` batch-independent ones (e.g. the
    old task prompts); `args` are the constructor arguments, so `build_head(head.spec())` rebuilds the head.
    """

    kind = ""
    reads: tuple[str, ...] = ()
    constants: tuple[str, ...] = ()

    def __init__(self, **args: Any) -> None:
        super().__init__()
        self.args = dict(args)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            HEADS[cls.kind] = cls

    def spec(self) -> dict[str, Any]:
        """{"kind", "args"}: plain data that rebuilds this head (weights come from the checkpoint)."""
        return {"kind": self.kind, "args": {k: list(v) if isinstance(v, tuple) else v for k, v in self.args.items()}}

    def shared_logit(self, reps: dict[str, torch.Tensor]) -> torch.Tensor:
        """The head's tower on the shared representation alone [B] (MPT-Rec's auxiliary shared-only logit)."""
        return self.tower(reps["s"])


def build_head(spec: dict[str, Any]) -> TaskHead:
    """A freshly initialized head from `spec()` output."""
    kind = spec.get("kind")
    if kind not in HEADS:
        raise ValueError(f"unknown new-task head {kind!r}; known heads: {', '.join(sorted(HEADS))}")
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.get("args", {}).items()}
    return HEADS[kind](**args)
