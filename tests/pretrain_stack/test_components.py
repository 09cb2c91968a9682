"""Each registered component's output shapes, causality and padding handling."""

from __future__ import annotations

import pytest
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from pretrain_stack import (DECODERS, EMBEDDINGS, ENCODERS, TARGETS, TGT_EMBEDDINGS, ConfigError, EmbeddingStack,
                            build_model)

B, L, H, V = 3, 6, 16, 20


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def ids(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.long)


SRC = ids([[1, 2, 3, 4, 5, 6], [7, 8, 9, 0, 0, 0], [10, 11, 0, 0, 0, 0]])


def test_item_embedding_shape_and_zero_padding() -> None:
    emb = EMBEDDINGS.build({"name": "item", "vocab_size": V, "hidden_size": H})
    out = emb({"src": SRC})
    assert out.shape == (B, L, H)
    assert torch.all(out[SRC == 0] == 0)
    tgt = TGT_EMBEDDINGS.build({"name": "item", "vocab_size": V, "hidden_size": H})
    assert tgt({"tgt_in": SRC[:, :2]}).shape == (B, 2, H)


def test_position_embedding_shape_and_max_len() -> None:
    emb = EMBEDDINGS.build({"name": "position", "max_len": L, "hidden_size": H})
    out = emb({"src": SRC})
    assert out.shape == (B, L, H)
    assert torch.equal(out[0], out[1])
    with pytest.raises(ConfigError, match="exceeds"):
        emb({"src": torch.ones(1, L + 1, dtype=torch.long)})


def test_segment_embedding_defaults_to_segment_zero() -> None:
    emb = EMBEDDINGS.build({"name": "segment", "hidden_size": H})
    assert emb({"src": SRC}).shape == (B, L, H)
    seg = torch.zeros_like(SRC)
    seg[:, 3:] = 1
    assert not torch.equal(emb({"src": SRC, "seg": seg}), emb({"src": SRC}))


def test_sparse_features_pool_each_feature() -> None:
    features = [{"name": "a", "num_embeddings": 5}, {"name": "b", "num_embeddings": 7}]
    emb = EMBEDDINGS.build({"name": "sparse_features", "features": features, "embedding_dim": 4})
    kjt = KeyedJaggedTensor.from_lengths_sync(keys=["a", "b"], values=torch.tensor([1, 2, 3, 4, 6]),
                                              lengths=torch.tensor([1, 1, 2, 0, 1, 0]))
    out = emb({"sparse": kjt})
    assert out.shape == (B, 2 * 4) and emb.output_dim == 8
    assert torch.all(out[0, 4:] == 0)  # feature b is empty for sample 0: sum pooling gives zeros


def test_sparse_features_take_a_width_per_table() -> None:
    features = [{"name": "a", "num_embeddings": 5}, {"name": "b", "num_embeddings": 7},
                {"name": "c", "num_embeddings": 3}]
    emb = EMBEDDINGS.build({"name": "sparse_features", "features": features, "embedding_dim": 4,
                            "embedding_dims": {"a": 2, "bc": 6}, "shared_tables": {"bc": ["b", "c"]}})
    widths = {c.name: c.embedding_dim for c in emb.ebc.embedding_bag_configs()}
    assert widths == {"t_a": 2, "t_bc": 6}
    assert emb.feature_order == ["a", "b", "c"] and emb.feature_dims == [2, 6, 6] and emb.output_dim == 14
    kjt = KeyedJaggedTensor.from_lengths_sync(keys=["a", "b", "c"], values=torch.tensor([1, 2, 3, 4, 6, 2, 0, 1]),
                                              lengths=torch.tensor([1, 1, 1, 2, 0, 1, 1, 1, 0]))
    out = emb({"sparse": kjt})
    table_a = emb.ebc.embedding_bags["t_a"].weight
    assert out.shape == (B, 14) and torch.equal(out[0, :2], table_a[1]) and torch.equal(out[1, :2], table_a[2])
    assert torch.all(out[1, 2:8] == 0)  # feature b is empty for sample 1


@pytest.mark.parametrize("dims, key", [({"zz": 3}, "embedding_dims.zz"), ({"a": 0}, "embedding_dims.a")])
def test_sparse_feature_widths_name_the_bad_key(dims: dict, key: str) -> None:
    features = [{"name": "a", "num_embeddings": 5}]
    with pytest.raises(ConfigError, match=key):
        EMBEDDINGS.build({"name": "sparse_features", "features": features, "embedding_dims": dims})


def test_table_grouping_and_table_configs_are_public() -> None:
    from pretrain_stack.embeddings.sparse_features import table_config, table_groups

    features = [{"name": n, "num_embeddings": r} for n, r in (("a", 10), ("b", 7), ("c", 5))]
    assert table_groups(features, {"ab": ["a", "b"]}) == {"ab": ["a", "b"], "c": ["c"]}
    assert table_groups(features, None) == {"a": ["a"], "b": ["b"], "c": ["c"]}
    with pytest.raises(ConfigError, match="shared_tables.ab: unknown feature 'z'"):
        table_groups(features, {"ab": ["a", "z"]})
    config = table_config("t_c", 5, 4, ["c"], "mean")
    assert (config.num_embeddings, config.embedding_dim, config.feature_names) == (5, 4, ["c"])
    emb = EMBEDDINGS.build({"name": "sparse_features", "features": features, "embedding_dim": 4,
                            "shared_tables": {"ab": ["a", "b"]}})
    assert [t.name for t in emb.ebc.embedding_bag_configs()] == ["t_ab", "t_c"]
    assert emb.feature_order == ["a", "b", "c"] and emb.output_dim == 12


def test_dense_features_pass_through_or_project() -> None:
    x = torch.randn(B, 5)
    assert torch.equal(EMBEDDINGS.build({"name": "dense_features", "num_dense": 5})({"dense": x}), x)
    proj = EMBEDDINGS.build({"name": "dense_features", "num_dense": 5, "out_dim": 3})
    assert proj({"dense": x}).shape == (B, 3) and proj.output_dim == 3


def test_embedding_stack_sum_and_concat() -> None:
    parts = {"item": EMBEDDINGS.build({"name": "item", "vocab_size": V, "hidden_size": H}),
             "position": EMBEDDINGS.build({"name": "position", "max_len": L, "hidden_size": H})}
    assert EmbeddingStack(parts)({"src": SRC}).shape == (B, L, H)
    cat = EmbeddingStack(parts, combine="concat")
    assert cat({"src": SRC}).shape == (B, L, 2 * H) and cat.output_dim == 2 * H


@pytest.mark.parametrize("causal", [False, True])
def test_transformer_encoder_shape(causal: bool) -> None:
    enc = ENCODERS.build({"name": "transformer", "hidden_size": H, "causal": causal})
    assert enc(torch.randn(B, L, H), {"src": SRC}).shape == (B, L, H)


def sequence_model(causal: bool):
    cfg = {"hidden_size": H,
           "embedding": {"parts": [{"name": "item"}, {"name": "position"}]},
           "encoder": {"name": "transformer", "layers": 2, "heads": 2, "causal": causal},
           "target": {"name": "lm"}}
    return build_model(cfg, vocab_size=V, max_len=L).eval()


def test_causal_encoder_does_not_look_ahead() -> None:
    model = sequence_model(causal=True)
    changed = SRC.clone()
    changed[:, 4] = 19
    with torch.no_grad():
        before, after = model.encode({"src": SRC}), model.encode({"src": changed})
    assert torch.allclose(before[0, :4], after[0, :4], atol=1e-6)
    assert not torch.allclose(before[0, 4:], after[0, 4:])
    bidirectional = sequence_model(causal=False)
    with torch.no_grad():
        both = bidirectional.encode({"src": SRC}), bidirectional.encode({"src": changed})
    assert not torch.allclose(both[0][0, :4], both[1][0, :4])


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("training", [False, True])
def test_padding_does_not_change_real_positions(causal: bool, training: bool) -> None:
    enc = ENCODERS.build({"name": "transformer", "hidden_size": H, "causal": causal, "dropout": 0.0}).train(training)
    emb = torch.randn(1, 3, H)
    real = ids([[4, 5, 6]])
    padded_emb = torch.cat([torch.randn(1, 2, H), emb, torch.randn(1, 2, H)], dim=1)
    padded = ids([[0, 0, 4, 5, 6, 0, 0]])  # left and right padding together
    with torch.no_grad():
        ref = enc(emb, {"src": real})
        out = enc(padded_emb, {"src": padded})
    assert torch.isfinite(out).all()
    assert torch.allclose(out[:, 2:5], ref, atol=1e-5)
    all_pad = enc(torch.randn(2, 4, H), {"src": torch.zeros(2, 4, dtype=torch.long)})
    assert torch.isfinite(all_pad).all()


def test_mlp_encoder_shape() -> None:
    enc = ENCODERS.build({"name": "mlp", "input_dim": 10, "hidden": [8, 4], "dropout": 0.1})
    assert enc(torch.randn(B, 10), {}).shape == (B, 4) and enc.output_dim == 4


def test_transformer_decoder_shape_causality_and_padding() -> None:
    dec = DECODERS.build({"name": "transformer", "hidden_size": H, "dropout": 0.0}).eval()
    memory = torch.randn(B, L, H)
    tgt_in = ids([[21, 1, 2], [21, 3, 0], [21, 0, 0]])
    tgt_emb = torch.randn(B, 3, H)
    with torch.no_grad():
        out = dec(tgt_emb, memory, {"src": SRC, "tgt_in": tgt_in})
        assert out.shape == (B, 3, H) and torch.isfinite(out).all()
        later = tgt_emb.clone()
        later[:, 2] += 1.0
        assert torch.allclose(dec(later, memory, {"src": SRC, "tgt_in": tgt_in})[:, :2], out[:, :2], atol=1e-6)
        first_only = dec(tgt_emb[:, :1], memory, {"src": SRC, "tgt_in": tgt_in[:, :1]})
        assert torch.allclose(first_only[:, 0], out[:, 0], atol=1e-5)


def test_mlm_counts_only_masked_positions() -> None:
    target = TARGETS.build({"name": "mlm", "hidden_size": H, "vocab_size": V})
    labels = torch.zeros(B, L, dtype=torch.long)
    labels[0, 2], labels[1, 1] = 5, 7
    out = target(torch.randn(B, L, H), {"labels": labels})
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"]) and int(out["num_predictions"]) == 2
    assert target.scores(torch.randn(B, H)).shape == (B, V)


def test_lm_shifts_src_when_no_labels() -> None:
    target = TARGETS.build({"name": "lm", "hidden_size": H, "vocab_size": V})
    out = target(torch.randn(B, L, H), {"src": SRC})
    assert int(out["num_predictions"]) == int((SRC[:, 1:] > 0).sum())
    empty = target(torch.randn(B, L, H), {"labels": torch.zeros(B, L, dtype=torch.long)})
    assert float(empty["loss"]) == 0.0


def test_cls_pools_and_predicts() -> None:
    target = TARGETS.build({"name": "cls", "input_dim": H, "num_classes": 3, "pooling": "mean"})
    out = target(torch.randn(B, L, H), {"label": torch.tensor([0, 2, 1])})
    assert out["logits"].shape == (B, 3) and torch.isfinite(out["loss"])
    flat = TARGETS.build({"name": "cls", "input_dim": H, "pooling": "none"})
    assert flat(torch.randn(B, H), {})["probs"].shape == (B, 2)


def test_multitask_bce_sums_task_losses() -> None:
    target = TARGETS.build({"name": "multitask_bce", "tasks": ["click", "like"]})
    logits, labels = torch.randn(B, 2), torch.tensor([[1, 0], [0, 1], [1, 1]])
    out = target(logits, {"labels": labels})
    assert out["task_losses"].shape == (2,)
    assert torch.allclose(out["loss"], out["task_losses"].sum())
    assert torch.equal(target({"logits": logits}, {})["logits"], logits)
