"""Activation ranges for static INT8: the input range every dense layer sees on calibration data.

Measured once on the fp32 network (as post-training static quantization observes the float model) and turned into
each int8 layer's fixed activation scale, so a row's score does not depend on the batch it is scored in.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mtrec.data.batches import EncodedFrame
from mtrec.models.inputs import run_network
from mtrec.quant.units import Unit

CALIBRATION_BATCH = 4096


def activation_ranges(network: nn.Module, encoded: EncodedFrame, units: list[Unit],
                      batch_size: int = CALIBRATION_BATCH) -> dict[str, tuple[float, float]]:
    """{dense unit's module path: (min, max) of its input over every row of `encoded`} (units never run are
    absent)."""
    ranges: dict[str, tuple[float, float]] = {}

    def observer(path: str) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0].detach()
            if x.numel():
                low, high = float(x.min()), float(x.max())
                seen = ranges.get(path, (low, high))
                ranges[path] = (min(seen[0], low), max(seen[1], high))
        return hook

    hooks = [network.get_submodule(u.module).register_forward_pre_hook(observer(u.module))
             for u in units if u.kind == "dense"]
    training = network.training
    network.eval()
    try:
        with torch.inference_mode():
            for batch in encoded.batches(batch_size):
                run_network(network, batch)
    finally:
        for handle in hooks:
            handle.remove()
        network.train(training)
    return ranges
