"""The network's input dict, built in one place for training, evaluation and scoring.

A pretrain_stack network reads {"sparse": KJT, "dense": [B, D]} plus, when training, "labels" [B, T] (the target
then computes the loss) and "progress" (training progress in [0, 1], for schedules such as MPT-Rec's gradient
reversal; inference uses the schedule's end). Scoring passes no labels, so no loss is computed on that path.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn

from mtrec.data.batches import Batch


def network_inputs(batch: Batch, labels: bool = False, progress: float | None = None) -> dict[str, Any]:
    """{"sparse", "dense"} of `batch`, with its "labels" when `labels` and a scalar "progress" when given."""
    inputs: dict[str, Any] = {"sparse": batch.sparse, "dense": batch.dense}
    if labels:
        if batch.labels is None:
            raise ValueError("training needs labelled batches; this batch has no labels")
        inputs["labels"] = batch.labels
    if progress is not None:
        inputs["progress"] = torch.tensor(float(progress))
    return inputs


def bf16_autocast(enabled: bool, device_type: str = "cpu") -> AbstractContextManager[Any]:
    """bf16 autocast on `device_type` when `enabled` (training forwards only; evaluation stays fp32)."""
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=enabled)


def run_network(network: nn.Module, batch: Batch, labels: bool = False, progress: float | None = None,
                bf16: bool = False, device_type: str = "cpu") -> dict[str, torch.Tensor]:
    """The network's outputs ("logits", and "loss" with labels) on one batch."""
    with bf16_autocast(bf16, device_type):
        return network(network_inputs(batch, labels, progress))
