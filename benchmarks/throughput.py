"""Training throughput: mtrec's mptrec against a plain-PyTorch MPT-Rec, alternated in one run on the same data.

Two workloads. `adult`: the baseline is written the way the reference implementation is: one `nn.Embedding` per
feature, one expert module per task and a Python loop over tasks, dense Adam on everything (tables included).
`bigtable`: the same architecture on a synthetic Criteo-shaped workload (benchmarks/bigtables.py: 26 tables of
100k-1M rows, dims 16-64, multi-hot bags, 13 dense), the plain side with one `nn.EmbeddingBag` per feature under
dense Adam (`plain`) and under torch's SparseAdam with fused dense Adam (`plain_sparse`, the stronger baseline).
mtrec trains the same architecture with FBGEMM fused embedding tables (Adagrad in backward), batched
experts/towers and the options listed in VARIANTS. Both see identical batches; rounds alternate so machine noise
hits both.

python -m benchmarks.throughput [--workloads adult bigtable] [--batch-sizes 256 1024 2048]
    [--big-batch-sizes 512 2048 8192] [--steps 60] [--max-seconds 4] [--rounds 3] [--out reports/bench]
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
from benchmarks.bigtables import TASKS, Feature, PlainBags, criteo_features, make_batches, mtrec_network
from benchmarks.common import write_results
from benchmarks.sections import num, scaled
from benchmarks.roofline import (copy_bandwidth, dense_flops, dense_step, embedding_bytes, gemm_shapes,
                                 matmul_rates, roofline)
from mtrec.data.vocab import Vocabularies
from mtrec.train.fused import fuse_embeddings, fused_parameter_ids
from mtrec.train.execution import cpu_flags
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


class PlainEmbeddings(nn.Module):
    """One nn.Embedding per categorical column, concatenated (the reference implementation's input layer)."""

    def __init__(self, cardinalities: list[int], dim: int = 4) -> None:
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(c, dim) for c in cardinalities)
        self.output_dim = dim * len(cardinalities)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.cat([emb(ids[:, i]) for i, emb in enumerate(self.tables)], dim=1)


class PlainMPTRec(nn.Module):
    """MPT-Rec in plain PyTorch over an input layer `embed` (a module with `output_dim`): per-task modules and
    Python loops over tasks (the reference style)."""

    def __init__(self, embed: nn.Module, num_tasks: int, experts: tuple[int, ...] = (256, 128),
                 towers: tuple[int, ...] = (64, 32), gen_coe: float = 0.1, env_coe: float = 0.1) -> None:
        super().__init__()
        self.embed = embed
        in_dim = embed.output_dim
        d = experts[-1]
        self.num_tasks, self.gen_coe, self.env_coe = num_tasks, gen_coe, env_coe
        self.shared = _mlp([in_dim, *experts])
        self.task_experts = nn.ModuleList(_mlp([in_dim, *experts]) for _ in range(num_tasks))
        self.prompts = nn.Embedding(num_tasks, d)
        self.gates = nn.ModuleList(nn.Linear(in_dim, 2) for _ in range(num_tasks))
        self.towers = nn.ModuleList(nn.Sequential(_mlp([d, *towers]), nn.Linear(towers[-1], 1)) for _ in range(num_tasks))
        self.classifier = nn.Sequential(nn.Linear(d, 64), nn.ReLU(), nn.Linear(64, num_tasks))

    def _mix(self, x: torch.Tensor, s: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Task t's gate [B, 2] and gated mix of its prompted representation with s."""
        r = self.task_experts[t](x) * self.prompts.weight[t]
        g = torch.softmax(self.gates[t](x), dim=1)
        return g, g[:, :1] * r + g[:, 1:] * s

    def logits(self, inputs: Any) -> torch.Tensor:
        """Per-task logits [B, T] (what evaluation reads)."""
        x = self.embed(inputs)
        s = self.shared(x)
        return torch.cat([self.towers[t](self._mix(x, s, t)[1]) for t in range(self.num_tasks)], dim=1)

    def forward(self, inputs: Any, labels: torch.Tensor, progress: float) -> torch.Tensor:
        x = self.embed(inputs)
        s = self.shared(x)
        alpha = 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0
        loss = x.new_zeros(())
        for t in range(self.num_tasks):
            g, mixed = self._mix(x, s, t)
            y = labels[:, t]
            loss = loss + F.binary_cross_entropy_with_logits(self.towers[t](mixed).squeeze(1), y)
            loss = loss + self.gen_coe * F.binary_cross_entropy_with_logits(self.towers[t](s).squeeze(1), y)
            cls = self.classifier(g[:, 1:].detach() * _GradReverse.apply(s, alpha))
            loss = loss + self.env_coe * F.cross_entropy(cls, torch.full((len(y),), t, dtype=torch.long))
        return loss


VARIANTS = {"fp32": {}, "bf16": {"autocast_bf16": True}, "compile": {"compile": True},
            "compile+bf16": {"compile": True, "autocast_bf16": True}}
WARMUP_STEPS = 3


class _PlainBatch(tuple):
    """(ids [B, F], labels [B, T]) whose len() is the number of examples."""

    def __len__(self) -> int:
        return int(self[0].shape[0])


def plain_batch(batch: Any, features: list[str]) -> _PlainBatch:
    """An mtrec Batch of single-valued features as the plain model's (ids [B, F], labels [B, T])."""
    return _PlainBatch((torch.stack([batch.sparse[k].values() for k in features], dim=1), batch.labels))


def _timed(step: Callable[[Any], None], batches: list, steps: int, max_seconds: float | None = None) -> float:
    """Examples per second over `steps` steps (after the warm-up steps), stopping early after `max_seconds`
    (at least 2 timed steps), so a slow baseline costs bounded time."""
    for b in batches[:WARMUP_STEPS]:
        step(b)
    start = time.perf_counter()
    n = 0
    for i in range(steps):
        b = batches[(i + WARMUP_STEPS) % len(batches)]
        step(b)
        n += len(b)
        if max_seconds is not None and i >= 1 and time.perf_counter() - start > max_seconds:
            break
    return n / (time.perf_counter() - start)


def _alternate(steps: dict[str, tuple[Callable[[Any], None], list]], rounds: int, count: int,
               max_seconds: float | None) -> dict[str, list[float]]:
    """Each named (step, batches) timed once per round, in turn, `rounds` times: examples/s samples per name."""
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, (step, batches) in steps.items():
            samples[name].append(_timed(step, batches, count, max_seconds))
    return samples


def _summary(batch_size: int, samples: dict[str, list[float]], variants: list[str],
             baselines: list[str]) -> dict[str, Any]:
    """Medians and each mtrec variant's ratio to each baseline (ratio_to_<baseline>)."""
    medians = {k: float(np.median(v)) for k, v in samples.items()}
    out: dict[str, Any] = {"batch_size": batch_size, "examples_per_second": medians, "samples": samples}
    for base in baselines:
        out[f"ratio_to_{base}"] = {k: medians[k] / medians[base] for k in variants}
    return out


def _mtrec_steps(network: nn.Module, variants: list[str]) -> tuple[dict[str, Callable[[Any], Any]],
                                                                   torch.optim.Optimizer]:
    """mtrec's training step per variant on `network` (tables fused, Adagrad in backward; dense fused Adam), and
    the dense optimizer."""
    fuse_embeddings(network, "adagrad", 0.05)
    skip = fused_parameter_ids(network)
    dense_opt = dense_adam([p for p in network.parameters() if p.requires_grad and id(p) not in skip], lr=1e-3)
    network.train()
    return {name: make_step(network, dense_opt, progress=lambda: 0.5, **VARIANTS[name]) for name in variants}, dense_opt


def _plain_step(model: nn.Module, optimizers: list[torch.optim.Optimizer]) -> Callable[[Any], None]:
    """A plain training step: loss, zero_grad, backward, every optimizer's step."""

    def step(inp: Any) -> None:
        loss = model(inp[0], inp[1], 0.5) if isinstance(inp, tuple) else model(inp, inp.labels, 0.5)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in optimizers:
            opt.step()

    return step


def measure(batch_size: int, steps: int, rounds: int, data: Any,
            variants: list[str] | None = None) -> dict[str, Any]:
    """Adult: alternate the plain MPT-Rec and each mtrec variant (default: all) `rounds` times at one batch size."""
    chosen = list(variants or VARIANTS)
    model = mtrec.build_model("mptrec", schema=data.schema, tasks=data.tasks, dataset="adult")
    vocabs = Vocabularies.fit(data.train, model.schema)
    model.build_network(vocabs, seed=0)
    encoded = model.encode(data.train)
    batches = list(encoded.batches(batch_size, shuffle=True, seed=0, drop_last=True))
    plain_inputs = [plain_batch(b, model.schema.sparse) for b in batches]
    torch.manual_seed(0)
    plain = PlainMPTRec(PlainEmbeddings([vocabs.num_embeddings(f) for f in model.schema.sparse]), len(data.tasks))
    runs: dict[str, tuple[Callable[[Any], Any], list]] = {
        "plain": (_plain_step(plain, [torch.optim.Adam(plain.parameters(), lr=1e-3)]), plain_inputs)}
    runs.update({name: (step, batches) for name, step in _mtrec_steps(model.require_network(), chosen)[0].items()})
    return _summary(batch_size, _alternate(runs, rounds, steps, None), chosen, ["plain"])


def measure_bigtable(batch_size: int, steps: int, rounds: int, features: list[Feature], variants: list[str],
                     max_seconds: float, machine: dict[str, Any] | None = None) -> dict[str, Any]:
    """Big tables: plain (dense Adam), plain_sparse (SparseAdam tables + fused dense Adam) and mtrec variants,
    alternated `rounds` times on identical batches; each timing stops after `max_seconds`. With `machine` (matmul
    rates, copy bandwidth) each variant's dense part alone is timed in the same rounds and its roofline added."""
    batches, plain_batches = make_batches(features, batch_size, count=WARMUP_STEPS + 4, seed=batch_size)
    torch.manual_seed(0)
    plain = PlainMPTRec(PlainBags(features, sparse=False), len(TASKS))
    sparse = PlainMPTRec(PlainBags(features, sparse=True), len(TASKS))
    table_params = list(sparse.embed.bags.parameters())
    dense_params = [p for n, p in sparse.named_parameters() if not n.startswith("embed.bags.")]
    runs: dict[str, tuple[Callable[[Any], Any], list]] = {
        "plain": (_plain_step(plain, [torch.optim.Adam(plain.parameters(), lr=1e-3)]), plain_batches),
        "plain_sparse": (_plain_step(sparse, [torch.optim.SparseAdam(table_params, lr=1e-3),
                                              dense_adam(dense_params, lr=1e-3)]), plain_batches)}
    torch.manual_seed(0)
    network = mtrec_network(features)
    mtrec_steps, dense_opt = _mtrec_steps(network, variants)
    runs.update({name: (step, batches) for name, step in mtrec_steps.items()})
    if machine is not None:
        runs.update({f"dense {name}": (dense_step(network, dense_opt, bool(VARIANTS[name].get("autocast_bf16"))),
                                       batches) for name in variants if not VARIANTS[name].get("compile")})
    samples = _alternate(runs, rounds, steps, max_seconds)
    dense_samples = {k.removeprefix("dense "): samples.pop(k) for k in list(samples) if k.startswith("dense ")}
    out = _summary(batch_size, samples, variants, ["plain", "plain_sparse"])
    if machine is not None:
        out["roofline"] = _roofline(network, batches[0], features, machine, out["examples_per_second"],
                                    {k: float(np.median(v)) for k, v in dense_samples.items()})
    return out


def _roofline(network: nn.Module, batch: Any, features: list[Feature], machine: dict[str, Any],
              step_eps: dict[str, float], dense_eps: dict[str, float]) -> dict[str, Any]:
    """FLOPs and bytes per example, and per variant achieved / bound of its dense and embedding parts."""
    flops = dense_flops(network, batch)
    moved = embedding_bytes(batch, {f.name: f.dim for f in features})
    per_variant = {name: {"dense_examples_per_s": eps,
                          **roofline(flops, moved, machine["matmul"]["bf16" if "bf16" in name else "fp32"],
                                     machine["copy_bytes_per_s"], step_eps[name], eps)}
                   for name, eps in dense_eps.items()}
    return {"dense_flops_per_example": flops, "embedding_bytes_per_example": moved, "variants": per_variant}


def machine_rates(batch_size: int, copy_mib: int = 256) -> dict[str, Any]:
    """This machine's matmul FLOP/s (fp32, bf16, int8) at the bigtable model's GEMM shapes and copy bandwidth."""
    shapes = gemm_shapes(mtrec_network(criteo_features(0.0)), batch_size)
    return {"matmul": matmul_rates(shapes), "copy_bytes_per_s": copy_bandwidth(copy_mib), "gemm_batch": batch_size,
            "cpu_flags": [f for f in ("avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni") if f in cpu_flags()]}


def _adult_markdown(results: list[dict[str, Any]], variants: list[str]) -> list[str]:
    plain_256 = next((r["examples_per_second"]["plain"] for r in results if r["batch_size"] == 256), None)
    lines = ["| batch | plain PyTorch | " + " | ".join(f"mtrec {v}" for v in variants) + " | " +
             " | ".join(f"{v} / plain" for v in variants) + (" | best / plain@256 |" if plain_256 else " |"),
             "|---|---|" + "---|" * (2 * len(variants) + (1 if plain_256 else 0))]
    for r in results:
        eps = r["examples_per_second"]
        best = max(eps[v] for v in variants)
        lines.append(f"| {r['batch_size']} | {eps['plain']:,.0f} | " + " | ".join(f"{eps[v]:,.0f}" for v in variants) +
                     " | " + " | ".join(f"{r['ratio_to_plain'][v]:.2f}x" for v in variants) +
                     (f" | {best / plain_256:.2f}x |" if plain_256 else " |"))
    return lines


def _bigtable_markdown(results: list[dict[str, Any]], variants: list[str]) -> list[str]:
    lines = ["| batch | plain (dense Adam) | plain SparseAdam | " + " | ".join(f"mtrec {v}" for v in variants) +
             " | best / plain | best / plain SparseAdam |", "|---|---|---|" + "---|" * (len(variants) + 2)]
    for r in results:
        eps = r["examples_per_second"]
        best = max(variants, key=lambda v: eps[v])
        lines.append(f"| {r['batch_size']} | {eps['plain']:,.0f} | {eps['plain_sparse']:,.0f} | " +
                     " | ".join(f"{eps[v]:,.0f}" for v in variants) +
                     f" | {r['ratio_to_plain'][best]:.2f}x | {r['ratio_to_plain_sparse'][best]:.2f}x |")
    return lines


def roofline_markdown(machine: dict[str, Any], results: list[dict[str, Any]]) -> list[str]:
    """The machine's roofs, then per batch and variant: FLOPs and bytes per example and achieved / bound."""
    rates = machine["matmul"]
    lines = [f"Machine: matmul {rates['fp32'] / 1e9:,.0f} GFLOP/s fp32, {rates['bf16'] / 1e9:,.0f} bf16, "
             f"{rates['int8'] / 1e9:,.0f} GOP/s int8 at the model's GEMM shapes (batch {machine['gemm_batch']}); "
             f"copy {machine['copy_bytes_per_s'] / 1e9:,.1f} GB/s; flags {', '.join(machine['cpu_flags']) or '-'}.",
             "", "| batch | variant | dense MFLOP/ex | embedding KB/ex | dense GFLOP/s | dense / matmul roof | "
             "embedding GB/s | embedding / copy roof | step bound ex/s | step / bound |", "|---|---|" + "---|" * 8]
    for r in results:
        roof = r["roofline"]
        for name, v in roof["variants"].items():
            lines.append(f"| {r['batch_size']} | {name} | {roof['dense_flops_per_example'] / 1e6:.2f} | "
                         f"{roof['embedding_bytes_per_example'] / 1e3:.1f} | {v['dense_flops_per_s'] / 1e9:,.1f} | "
                         f"{100 * v['dense_of_bound']:.0f}% | {num(scaled(v['embedding_bytes_per_s'], 1e-9), ',.2f').text} | "
                         f"{num(scaled(v['embedding_of_bound'], 100), '.0f').text}% | "
                         f"{v['step_bound_examples_per_s']:,.0f} | "
                         f"{100 * v['step_of_bound']:.0f}% |")
    return lines


def table_summary(features: list[Feature]) -> dict[str, Any]:
    """The workload's shape: features, table rows, dims, multi-hot features and table bytes (fp32)."""
    return {"features": [{"name": f.name, "rows": f.rows, "dim": f.dim, "multi_hot": f.multi_hot} for f in features],
            "table_parameters": sum(f.rows * f.dim for f in features),
            "table_mib": sum(f.rows * f.dim for f in features) * 4 / 2 ** 20}


def main(argv: list[str] | None = None) -> dict:
    """Measure every workload and batch size and write throughput.json / throughput.md."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.throughput")
    parser.add_argument("--workloads", nargs="+", default=["adult", "bigtable"], choices=["adult", "bigtable"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[256, 1024, 2048])
    parser.add_argument("--big-batch-sizes", nargs="+", type=int, default=[512, 2048, 8192])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--max-seconds", type=float, default=4.0,
                        help="bigtable: stop a timing after this many seconds (the dense-Adam baseline is slow)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                        help="mtrec variants to measure on adult (default: all)")
    parser.add_argument("--big-variants", nargs="+", default=["fp32", "bf16"], choices=list(VARIANTS),
                        help="mtrec variants to measure on bigtable")
    parser.add_argument("--table-scale", type=float, default=1.0, help="bigtable: multiply every table's rows")
    parser.add_argument("--no-roofline", dest="roofline", action="store_false",
                        help="bigtable: skip the machine rates and the dense-part timings")
    parser.add_argument("--copy-mib", type=int, default=256, help="roofline: size of the copied buffer")
    parser.add_argument("--out", default="reports/bench")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out: dict[str, Any] = {"threads": args.threads, "steps": args.steps, "rounds": args.rounds,
                           "variants": args.variants, "results": []}
    lines = [f"# Training throughput: mtrec mptrec vs plain PyTorch (examples/s, median of rounds)", "",
             f"{args.threads} threads, {args.steps} steps per measurement, {args.rounds} alternating rounds.", ""]
    if "adult" in args.workloads:
        data = mtrec.datasets.load("adult")
        out["results"] = [measure(bs, args.steps, args.rounds, data, args.variants) for bs in args.batch_sizes]
        lines += ["## adult", "", *_adult_markdown(out["results"], args.variants), ""]
    if "bigtable" in args.workloads:
        features = criteo_features(args.table_scale)
        machine = machine_rates(max(args.big_batch_sizes), args.copy_mib) if args.roofline else None
        big = [measure_bigtable(bs, args.steps, args.rounds, features, args.big_variants, args.max_seconds, machine)
               for bs in args.big_batch_sizes]
        shape = table_summary(features)
        out["bigtable"] = {**shape, "variants": args.big_variants, "max_seconds": args.max_seconds, "results": big,
                           "machine": machine}
        lines += [f"## bigtable (26 tables, {shape['table_parameters']:,} table parameters, "
                  f"{shape['table_mib']:,.0f} MiB fp32)", "", *_bigtable_markdown(big, args.big_variants), ""]
        if machine is not None:
            lines += ["### roofline", "", *roofline_markdown(machine, big), ""]
    markdown = "\n".join(lines) + "\n"
    write_results(args.out, "throughput", out, markdown)
    return out


if __name__ == "__main__":
    main()
