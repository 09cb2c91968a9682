"""The throughput benchmark's big-table workload: mtrec and plain PyTorch build the same model on the same ids."""

from __future__ import annotations

import json

import torch

from benchmarks import throughput
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
                           "--steps", "2", "--rounds", "1", "--big-variants", "fp32", "--out", str(tmp_path)])
    (run,) = out["bigtable"]["results"]
    eps = run["examples_per_second"]
    assert set(eps) == {"plain", "plain_sparse", "fp32"} and min(eps.values()) > 0
    assert run["ratio_to_plain_sparse"]["fp32"] == eps["fp32"] / eps["plain_sparse"]
    saved = json.loads((tmp_path / "throughput.json").read_text())
    assert saved["bigtable"]["table_parameters"] == sum(f.rows * f.dim for f in criteo_features(0.001))
    assert "best / plain SparseAdam" in (tmp_path / "throughput.md").read_text()
