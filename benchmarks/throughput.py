"""Training throughput: mtrec's mptrec against a plain-PyTorch MPT-Rec, alternated in one run on the same data.

The baseline is written here the way the reference implementation is: one `nn.Embedding` per feature, one
expert module per task and a Python loop over tasks, dense Adam on everything (tables included). mtrec trains
the same architecture with FBGEMM fused embedding tables (Adagrad in backward), batched experts/towers and
the options listed in VARIANTS. Both see identical batches; rounds alternate so machine noise hits both.

python -m benchmarks.throughput [--batch-sizes 256 1024 2048] [--steps 60] [--rounds 3] [--out reports/bench]
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import mtrec
from benchmarks.common import write_results
from mtrec.data.vocab import Vocabularies
from mtrec.train.fused import fuse_embeddings, fused_parameter_ids
from mtrec.train.loop import make_step
from mtrec.train.optim import dense_adam


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.alpha = alpha
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.alpha * grad, None


def _mlp(widths: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


class PlainMPTRec(nn.Module):
    """MPT-Rec in plain PyTorch: per-feature nn.Embedding, per-task modules, Python loops (the reference style)."""

    def __init__(self, cardinalities: list[int], num_tasks: int, dim: int = 4, experts: tuple[int, ...] = (256, 128),
                 towers: tuple[int, ...] = (64, 32), gen_coe: float = 0.1, env_coe: float = 0.1) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(c, dim) for c in cardinalities)
        in_dim = dim * len(cardinalities)
        d = experts[-1]
        self.num_tasks, self.gen_coe, self.env_coe = num_tasks, gen_coe, env_coe
        self.shared = _mlp([in_dim, *experts])
        self.task_experts = nn.ModuleList(_mlp([in_dim, *experts]) for _ in range(num_tasks))
        self.prompts = nn.Embedding(num_tasks, d)
        self.gates = nn.ModuleList(nn.Linear(in_dim, 2) for _ in range(num_tasks))
        self.towers = nn.ModuleList(nn.Sequential(_mlp([d, *towers]), nn.Linear(towers[-1], 1)) for _ in range(num_tasks))
        self.classifier = nn.Sequential(nn.Linear(d, 64), nn.ReLU(), nn.Linear(64, num_tasks))

    def forward(self, ids: torch.Tensor, labels: torch.Tensor, progress: float) -> torch.Tensor:
        x = torch.cat([emb(ids[:, i]) for i, emb in enumerate(self.embeddings)], dim=1)
        s = self.shared(x)
        alpha = 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0
        loss = x.new_zeros(())
        for t in range(self.num_tasks):
            r = self.task_experts[t](x) * self.prompts.weight[t]
            g = torch.softmax(self.gates[t](x), dim=1)
            mixed = g[:, :1] * r + g[:, 1:] * s
            y = labels[:, t]
            loss = loss + F.binary_cross_entropy_with_logits(self.towers[t](mixed).squeeze(1), y)
            loss = loss + self.gen_coe * F.binary_cross_entropy_with_logits(self.towers[t](s).squeeze(1), y)
            cls = self.classifier(g[:, 1:].detach() * _GradReverse.apply(s, alpha))
            loss = loss + self.env_coe * F.cross_entropy(cls, torch.full((len(y),), t, dtype=torch.long))
        return loss


VARIANTS = {"fp32": {}, "bf16": {"autocast_bf16": True}, "compile": {"compile": True},
            "compile+bf16": {"compile": True, "autocast_bf16": True}}


class _PlainBatch(tuple):
    """(ids [B, F], labels [B, T]) whose len() is the number of examples."""

    def __len__(self) -> int:
        return int(self[0].shape[0])


def _timed(step: Callable[[Any], None], batches: list, steps: int) -> float:
    """Examples per second over `steps` steps (after 3 warm-up steps)."""
    for b in batches[:3]:
        step(b)
    start = time.perf_counter()
    n = 0
    for i in range(steps):
        b = batches[(i + 3) % len(batches)]
        step(b)
        n += len(b)
    return n / (time.perf_counter() - start)


def measure(batch_size: int, steps: int, rounds: int, data: Any,
            variants: list[str] | None = None) -> dict[str, Any]:
    """Alternate baseline and each mtrec variant (default: all) `rounds` times at one batch size; median examples/s."""
    chosen = {name: VARIANTS[name] for name in (variants or VARIANTS)}
    model = mtrec.build_model("mptrec", schema=data.schema, tasks=data.tasks, dataset="adult")
    vocabs = Vocabularies.fit(data.train, model.schema)
    model.build_network(vocabs, seed=0)
    encoded = model.encode(data.train)
    batches = list(encoded.batches(batch_size, shuffle=True, seed=0, drop_last=True))
    plain_inputs = [_PlainBatch((torch.stack([b.sparse[k].values() for k in model.schema.sparse], dim=1), b.labels))
                    for b in batches]

    torch.manual_seed(0)
    plain = PlainMPTRec([vocabs.num_embeddings(f) for f in model.schema.sparse], len(data.tasks))
    plain_opt = torch.optim.Adam(plain.parameters(), lr=1e-3)

    def plain_step(inp: tuple[torch.Tensor, torch.Tensor]) -> None:
        loss = plain(inp[0], inp[1], 0.5)
        plain_opt.zero_grad(set_to_none=True)
        loss.backward()
        plain_opt.step()

    network = model.require_network()
    fuse_embeddings(network, "adagrad", 0.05)
    skip = fused_parameter_ids(network)
    dense_opt = dense_adam([p for p in network.parameters() if p.requires_grad and id(p) not in skip], lr=1e-3)
    mtrec_steps = {name: make_step(network, dense_opt, progress=lambda: 0.5, **opts) for name, opts in chosen.items()}
    warmup = {}
    for name, step in mtrec_steps.items():
        start = time.perf_counter()
        for b in batches[:3]:
            step(b)
        warmup[name] = time.perf_counter() - start

    samples: dict[str, list[float]] = {"plain": [], **{name: [] for name in chosen}}
    for _ in range(rounds):
        samples["plain"].append(_timed(plain_step, plain_inputs, steps))
        for name, step in mtrec_steps.items():
            samples[name].append(_timed(lambda b, s=step: s(b), batches, steps))
    medians = {k: float(np.median(v)) for k, v in samples.items()}
    return {"batch_size": batch_size, "examples_per_second": medians, "samples": samples, "warmup_seconds": warmup,
            "ratio_to_plain": {k: medians[k] / medians["plain"] for k in chosen}}


def main(argv: list[str] | None = None) -> dict:
    """Measure every batch size and write throughput.json / throughput.md."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.throughput")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[256, 1024, 2048])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                        help="mtrec variants to measure (default: all)")
    parser.add_argument("--out", default="reports/bench")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = mtrec.datasets.load("adult")
    variants = args.variants
    results = [measure(bs, args.steps, args.rounds, data, variants) for bs in args.batch_sizes]
    plain_256 = next((r["examples_per_second"]["plain"] for r in results if r["batch_size"] == 256), None)
    lines = ["# Training throughput: mtrec mptrec vs plain PyTorch (adult, examples/s, median of rounds)", "",
             f"{args.threads} threads, {args.steps} steps per measurement, {args.rounds} alternating rounds.", "",
             "| batch | plain PyTorch | " + " | ".join(f"mtrec {v}" for v in variants) + " | " +
             " | ".join(f"{v} / plain" for v in variants) + (" | best / plain@256 |" if plain_256 else " |"),
             "|---|---|" + "---|" * (2 * len(variants) + (1 if plain_256 else 0))]
    for r in results:
        eps = r["examples_per_second"]
        best = max(eps[v] for v in variants)
        lines.append(f"| {r['batch_size']} | {eps['plain']:,.0f} | " + " | ".join(f"{eps[v]:,.0f}" for v in variants) +
                     " | " + " | ".join(f"{r['ratio_to_plain'][v]:.2f}x" for v in variants) +
                     (f" | {best / plain_256:.2f}x |" if plain_256 else " |"))
    markdown = "\n".join(lines) + "\n"
    write_results(args.out, "throughput", {"results": results, "threads": args.threads, "steps": args.steps,
                                           "rounds": args.rounds, "variants": variants}, markdown)
    print(markdown)
    return {"results": results}


if __name__ == "__main__":
    main()
