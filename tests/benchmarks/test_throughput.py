"""The throughput benchmark's big-table workload: mtrec and plain PyTorch build the same model on the same ids."""

from __future__ import annotations

import json

import torch

from benchmarks import roofline, throughput
from benchmarks.bigtables import TASKS, PlainBags, criteo_features, make_batches, mtrec_network


def test_criteo_shape():
    features = criteo_features()
    assert len(features) == 26
    assert min(f.rows for f in features) == 100_000 and max(f.rows for f in features) == 1_000_000
    assert {f.dim for f in features} == {16, 32, 64}
    assert sum(f.multi_hot for f in features) == 3


def test_same_model_same_ids():
    """Equal parameter counts, and with mtrec's table weights copied in, the plain bags pool the same vectors."""
    features = criteo_features(scale=0.002)
    torch.manual_seed(0)
    network = mtrec_network(features)
    plain = throughput.PlainMPTRec(PlainBags(features, sparse=False), len(TASKS))
    assert sum(p.numel() for p in network.parameters()) == sum(p.numel() for p in plain.parameters())
    ours, theirs = make_batches(features, batch_size=32, count=1, seed=3)
    batch = ours[0]
    assert batch.sparse.lengths().sum() > 26 * 32  # the multi-hot bags hold more than one id
    weights = {name: bag.weight for part in network.embedding.parts.values() if hasattr(part, "ebc")
               for name, bag in part.ebc.embedding_bags.items()}
    with torch.no_grad():
        for f, bag in zip(features, plain.embed.bags):
            bag.weight.copy_(weights[f"t_{f.name}"])
        emb = network.embedding({"sparse": batch.sparse, "dense": batch.dense})
        assert torch.allclose(emb, plain.embed(theirs[0]), atol=1e-6)


def test_bigtable_run_writes_ratios(tmp_path):
    out = throughput.main(["--workloads", "bigtable", "--table-scale", "0.001", "--big-batch-sizes", "64",
                           "--steps", "2", "--rounds", "1", "--big-variants", "fp32", "--copy-mib", "8",
                           "--out", str(tmp_path)])
    (run,) = out["bigtable"]["results"]
    eps = run["examples_per_second"]
    assert set(eps) == {"plain", "plain_sparse", "fp32"} and min(eps.values()) > 0
    assert run["ratio_to_plain_sparse"]["fp32"] == eps["fp32"] / eps["plain_sparse"]
    saved = json.loads((tmp_path / "throughput.json").read_text())
    assert saved["bigtable"]["table_parameters"] == sum(f.rows * f.dim for f in criteo_features(0.001))
    md = (tmp_path / "throughput.md").read_text()
    assert "best / plain SparseAdam" in md and "embedding / copy roof" in md
    assert run["roofline"]["variants"]["fp32"]["dense_of_bound"] > 0


def test_roofline_counts():
    """Embedding bytes follow the lookups (5 touches of 4 bytes per looked-up value); dense FLOPs match the GEMMs."""
    features = criteo_features(scale=0.001)
    torch.manual_seed(0)
    network = mtrec_network(features)
    (batch,), _ = make_batches(features, batch_size=16, count=1, seed=1)
    dims = {f.name: f.dim for f in features}
    looked_up = sum(len(batch.sparse[f.name].values()) * f.dim for f in features)
    assert roofline.embedding_bytes(batch, dims) == 4.0 * 5 * looked_up / 16
    gemm = sum(2 * g * m * k * n for g, m, k, n in roofline.gemm_shapes(network, 16)) / 16
    flops = roofline.dense_flops(network, batch)
    assert 3 * gemm <= flops <= 4 * gemm  # forward, grad of input and of weight; towers also read s, classifier T*B
    bound = roofline.roofline(flops, 1000.0, matmul_rate=1e9, bandwidth=1e9, step_eps=100.0, dense_eps=200.0)
    assert bound["dense_flops_per_s"] == flops * 200.0 and bound["embedding_bytes_per_s"] == 1000.0 * 200.0
    assert bound["step_of_bound"] == (flops / 1e9 + 1000.0 / 1e9) * 100.0


def test_machine_rates_positive():
    rates = roofline.matmul_rates([(3, 64, 96, 128)], repeats=1)
    assert rates["fp32"] > 1e6 and rates["bf16"] > 1e6
    assert roofline.copy_bandwidth(mib=8, repeats=1) > 1e7
