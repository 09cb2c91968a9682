"""INT8/FP16 dense layers and per-table quantized embeddings against their fp32 originals (no training needed)."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from mtrec.models.layers import BatchedLinear
from mtrec.quant.dense import Int8Chain, QuantBatchedLinear, QuantLinear, int8_rows, quantize_dense
from mtrec.quant.precision import QuantizationError
from mtrec.quant.tables import quantize_tables, table_bytes, table_precisions, table_state, tables_from_state
from mtrec.quant.units import convert

torch.manual_seed(0)

# Tolerances relative to the output scale: int8 per-channel weights + dynamic uint8 activations ~1%, fp16 ~0.1%.
REL_TOL = {"int8": 0.03, "fp16": 0.003}


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_int8_rows_is_symmetric_per_row():
    w = torch.tensor([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0]])
    q, scale = int8_rows(w)
    assert q.dtype == torch.int8 and q[0].tolist() == [64, -127, 32] and q[1].tolist() == [0, 0, 0]
    assert scale.tolist() == pytest.approx([1.0 / 127, 1.0])


@pytest.mark.parametrize("precision", ["int8", "fp16"])
@pytest.mark.parametrize("shared", [True, False])
def test_batched_linear_matches_fp32(precision, shared):
    layer = BatchedLinear(3, 24, 16)
    x = torch.randn(40, 24) if shared else torch.randn(3, 40, 24)
    q = QuantBatchedLinear.from_float(layer, precision)
    with torch.inference_mode():
        ref, out = layer(x), q(x)
    assert out.shape == ref.shape == (3, 40, 16)
    assert _rel_err(out, ref) < REL_TOL[precision]


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_linear_with_fused_relu_matches_fp32(precision):
    layer = nn.Linear(24, 8)
    x = torch.randn(2, 5, 24)
    q = QuantLinear.from_float(layer, precision, relu=True)
    with torch.inference_mode():
        ref, out = torch.relu(layer(x)), q(x)
    assert out.shape == (2, 5, 8) and (out >= 0).all()
    assert _rel_err(out, ref) < REL_TOL[precision]


@pytest.mark.parametrize("input_range", [None, (-3.0, 3.0)], ids=["per-row", "calibrated"])
def test_quantized_layer_state_roundtrip_deepcopy_and_pickle(input_range):
    q = quantize_dense(BatchedLinear(2, 12, 6), "int8", input_range=input_range)
    assert q.calibrated == (input_range is not None)
    x = torch.randn(7, 12)
    with torch.inference_mode():
        ref = q(x)
    fresh = QuantBatchedLinear(2, 12, 6, "int8")
    buf = io.BytesIO()
    torch.save(q.state_dict(), buf)
    buf.seek(0)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    for other in (fresh, copy.deepcopy(q), pickle.loads(pickle.dumps(q))):
        with torch.inference_mode():
            assert torch.equal(other(x), ref)
    assert {k: v.dtype for k, v in q.state_dict().items()} == {
        "weight": torch.int8, "scale": torch.float32, "bias": torch.float32, "input_qparams": torch.float64}


def test_int8_chain_hands_uint8_between_calibrated_layers():
    """A converted MLP of shared -> member-first -> member-first int8 layers passes uint8 between them, scores
    within int8 tolerance of fp32 and of the unchained layers, and a row scores the same alone as in a batch."""
    mlp = nn.Sequential(BatchedLinear(3, 12, 32), nn.ReLU(), BatchedLinear(3, 32, 16), nn.ReLU(),
                        BatchedLinear(3, 16, 4))
    root = nn.Module()
    root.mlp = mlp
    x = torch.randn(64, 12)
    with torch.no_grad():
        h1 = torch.relu(mlp[0](x))
        h2 = torch.relu(mlp[2](h1))
        ref = mlp[4](h2)
    ranges = {"mlp.0": (float(x.min()), float(x.max())), "mlp.2": (0.0, float(h1.max())),
              "mlp.4": (0.0, float(h2.max()))}
    plan = {"mlp.0": "int8", "mlp.2": "int8", "mlp.4": "int8"}
    net = convert(root, plan, ranges)
    assert isinstance(net.mlp, Int8Chain) and isinstance(net.mlp[1], nn.Identity)
    seen = []
    hooks = [net.mlp[i].register_forward_pre_hook(lambda _m, a: seen.append(a[0].is_quantized)) for i in (0, 2, 4)]
    with torch.inference_mode():
        out = net.mlp(x)
        alone = net.mlp(x[5:6])
    for h in hooks:
        h.remove()
    assert seen[:3] == [False, True, True] and not out.is_quantized and out.dtype == torch.float32
    assert _rel_err(out, ref) < 2 * REL_TOL["int8"]
    assert torch.equal(alone[:, 0], out[:, 5])
    unchained = nn.Sequential(*net.mlp)
    with torch.inference_mode():
        assert _rel_err(out, unchained(x)) < REL_TOL["int8"] / 3


def test_quantize_dense_rejects_other_modules_and_keeps_fp32():
    layer = nn.Linear(3, 3)
    assert quantize_dense(layer, "fp32") is layer
    with pytest.raises(QuantizationError, match="BatchedLinear or nn.Linear"):
        quantize_dense(nn.Conv1d(1, 1, 1), "int8")


def _ebc() -> EmbeddingBagCollection:
    configs = [EmbeddingBagConfig(name=f"t{i}", embedding_dim=dim, num_embeddings=rows, feature_names=[f"f{i}"])
               for i, (rows, dim) in enumerate([(50, 8), (7, 4), (30, 16)])]
    return EmbeddingBagCollection(tables=configs, device=torch.device("cpu"))


def _kjt(batch: int) -> KeyedJaggedTensor:
    values = torch.cat([torch.randint(0, 50, (batch,)), torch.randint(0, 7, (batch,)),
                        torch.randint(0, 30, (2 * batch,))])
    lengths = torch.cat([torch.ones(2 * batch, dtype=torch.int32), torch.full((batch,), 2, dtype=torch.int32)])
    return KeyedJaggedTensor(keys=["f0", "f1", "f2"], values=values, lengths=lengths)


@pytest.mark.parametrize("precision,tol", [("fp32", 0.0), ("fp16", 1e-3), ("int8", 0.02), ("int4", 0.2)])
def test_tables_match_fp32_at_each_precision(precision, tol):
    ebc = _ebc()
    q = quantize_tables(ebc, {"t0": precision, "t2": precision})
    assert table_precisions(q) == {"t0": precision, "t1": "fp32", "t2": precision}
    for batch in (1, 64):
        kjt = _kjt(batch)
        with torch.inference_mode():
            ref, out = ebc(kjt).values(), q(kjt).values()
        assert out.shape == ref.shape
        assert _rel_err(out, ref) <= tol


def test_table_state_rebuilds_bit_exact_with_packed_sizes():
    ebc = _ebc()
    plan = {"t0": "int4", "t1": "fp16", "t2": "int8"}
    q = quantize_tables(ebc, plan)
    state = table_state(q)
    assert sum(t.numel() for t in state.values()) == table_bytes(50, 8, "int4") + table_bytes(7, 4, "fp16") + \
        table_bytes(30, 16, "int8") == 50 * (4 + 4) + 7 * 8 + 30 * (16 + 4)
    rebuilt = tables_from_state(q.embedding_bag_configs(), plan, False, state)
    kjt = _kjt(16)
    with torch.inference_mode():
        assert torch.equal(rebuilt(kjt).values(), q(kjt).values())
    with pytest.raises(QuantizationError, match="bytes saved"):
        tables_from_state(q.embedding_bag_configs(), {**plan, "t1": "fp32"}, False, state)


def test_quantize_tables_rejects_unknown_tables_and_precisions():
    with pytest.raises(QuantizationError, match="unknown table"):
        quantize_tables(_ebc(), {"nope": "int8"})
    with pytest.raises(QuantizationError, match="table precision must be one of"):
        quantize_tables(_ebc(), {"t0": "int2"})
