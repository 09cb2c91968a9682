"""Roofline of a training step on this machine: measured matmul rates (fp32, bf16, int8) at the model's own GEMM
shapes and memory copy bandwidth, the model's FLOPs and bytes per example, and achieved / bound per part.

The dense part (encoder + target, forward and backward, dense optimizer) is bound by the matmul rate; the
embedding part (pooled lookups forward, fused optimizer update backward) by memory bandwidth. A step is timed
whole and with the embedding output precomputed (dense part alone); the embedding part's time is the difference.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mtrec.data.batches import Batch
from mtrec.models.inputs import bf16_autocast, network_inputs


def _best_seconds(fn: Callable[[], Any], repeats: int, min_seconds: float = 0.2) -> float:
    """The fastest of `repeats` timings of `fn` (each timing loops until `min_seconds`), per call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        n, start = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        best = min(best, elapsed / n)
    return best


def matmul_rates(shapes: list[tuple[int, int, int, int]], repeats: int = 3) -> dict[str, float]:
    """FLOP/s of batched GEMMs [g, m, k] @ [g, k, n] summed over `shapes` (the model's own), per dtype:
    fp32, bf16 (native on AVX512-BF16/AMX CPUs) and int8 (torch._int_mm, int32 accumulation, g folded into m)."""
    flops = sum(2 * g * m * k * n for g, m, k, n in shapes)
    rates: dict[str, float] = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        pairs = [(torch.randn(g, m, k).to(dtype), torch.randn(g, k, n).to(dtype)) for g, m, k, n in shapes]
        rates[name] = flops / _best_seconds(lambda: [torch.bmm(a, b) for a, b in pairs], repeats)
    try:
        pairs8 = [(torch.randint(-127, 127, (g * m, _pad8(k)), dtype=torch.int8),
                   torch.randint(-127, 127, (_pad8(k), _pad8(n)), dtype=torch.int8)) for g, m, k, n in shapes]
        flops8 = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in pairs8)
        rates["int8"] = flops8 / _best_seconds(lambda: [torch._int_mm(a, b) for a, b in pairs8], repeats)
    except RuntimeError:
        rates["int8"] = float("nan")
    return rates


def _pad8(x: int) -> int:
    return max(8, (x + 7) // 8 * 8)


def copy_bandwidth(mib: int = 256, repeats: int = 3) -> float:
    """Bytes/s of a large tensor copy (read + write counted), the memory roof of the embedding part."""
    src = torch.ones(mib * 2 ** 18)
    dst = torch.empty_like(src)
    return 2 * src.numel() * 4 / _best_seconds(lambda: dst.copy_(src), repeats)


def gemm_shapes(network: nn.Module, batch_size: int) -> list[tuple[int, int, int, int]]:
    """(groups, batch, in, out) of every linear layer in the network's encoder (batched or not)."""
    shapes = []
    for module in network.encoder.modules():
        if hasattr(module, "n") and hasattr(module, "in_features"):
            shapes.append((module.n, batch_size, module.in_features, module.out_features))
        elif isinstance(module, nn.Linear):
            shapes.append((1, batch_size, module.in_features, module.out_features))
    return shapes


def dense_flops(network: nn.Module, batch: Batch) -> float:
    """FLOPs of the dense part's forward + backward on `batch` (counted by torch's FlopCounterMode), per example."""
    inputs = network_inputs(batch, labels=True, progress=0.5)
    emb = network.embedding(inputs).detach().requires_grad_(True)  # a training step also sends grads into the tables
    counter = FlopCounterMode(display=False)
    with counter:
        loss = network.target(network.encoder(emb, inputs), inputs)["loss"]
        loss.backward()
    network.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(batch)


def embedding_bytes(batch: Batch, dims: dict[str, int], state_per_row: int = 1) -> float:
    """Memory bytes per example of the embedding part: each looked-up row read forward, then read, updated and
    written back with its optimizer state (Adagrad: one state value per weight, `state_per_row` = 1) backward."""
    lengths = batch.sparse.length_per_key()
    values = sum(n * dims[key] for key, n in zip(batch.sparse.keys(), lengths))
    touches = 1 + 2 * (1 + state_per_row)  # forward read; backward read + write of weight and state
    return 4.0 * values * touches / len(batch)


def dense_step(network: nn.Module, optimizer: torch.optim.Optimizer, bf16: bool) -> Callable[[Batch], None]:
    """The training step without the embedding part: encoder + target forward/backward (down to the gradient of
    the embedding output, which a full step sends into the tables) and the dense optimizer, on the batch's
    embedding output computed once beforehand (cached per batch)."""
    cache: dict[int, tuple[torch.Tensor, dict[str, Any]]] = {}

    def step(batch: Batch) -> None:
        if id(batch) not in cache:
            inputs = network_inputs(batch, labels=True, progress=0.5)
            with torch.no_grad():
                cache[id(batch)] = (network.embedding(inputs).requires_grad_(True), inputs)
        emb, inputs = cache[id(batch)]
        with bf16_autocast(bf16):
            loss = network.target(network.encoder(emb, inputs), inputs)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


NOISE = 0.05  # the embedding part must take at least this share of a step to be told apart from timing noise


def roofline(flops_per_example: float, bytes_per_example: float, matmul_rate: float, bandwidth: float,
             step_eps: float, dense_eps: float) -> dict[str, float]:
    """Achieved rates and fractions of the bound: the dense part's FLOP/s against `matmul_rate`, the embedding
    part's bytes/s (its time = step time - dense time) against `bandwidth`, the whole step against both in series.
    The embedding figures are None (not measurable) when the difference is below NOISE of the step time: dividing
    by a difference within timing noise printed rates millions of times the copy roof."""
    step_s, dense_s = 1.0 / step_eps, 1.0 / dense_eps
    emb_s = step_s - dense_s
    measurable = emb_s >= NOISE * step_s
    bound_s = flops_per_example / matmul_rate + bytes_per_example / bandwidth
    return {"dense_flops_per_s": flops_per_example / dense_s, "dense_of_bound": flops_per_example / dense_s / matmul_rate,
            "embedding_bytes_per_s": bytes_per_example / emb_s if measurable else None,
            "embedding_of_bound": bytes_per_example / emb_s / bandwidth if measurable else None,
            "step_bound_examples_per_s": 1.0 / bound_s, "step_of_bound": bound_s / step_s}
