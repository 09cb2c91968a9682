"""The six multi-task backbones: build through pretrain_stack, train a step, representations, MPT-Rec's
auxiliary losses and gradient reversal, STEM's gradient isolation, and every shipped recipe."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torchrec import KeyedJaggedTensor

import mtrec.models  # noqa: F401  (registers the components)
from mtrec.recipe import CONFIG_DIR, MODELS
from mtrec.recipe import TrainConfig
from mtrec.models.layers import BatchedLinear, BatchedMLP, TaskGroups, grad_reverse, grl_alpha
from pretrain_stack import ENCODERS, ConfigError, build_model, save_component, validate_model_config

torch.set_num_threads(1)

FEATURES = [{"name": "user", "num_embeddings": 11}, {"name": "item", "num_embeddings": 13},
            {"name": "genre", "num_embeddings": 5}]
TASKS = ["click", "like", "buy"]
NUM_DENSE = 2
B = 6

TRAIN_KEYS = {f.name for f in dataclasses.fields(TrainConfig)}
REPR_KEYS = {
    "single": {"emb", "gate_in", "task_repr"},
    "shared_bottom": {"emb", "gate_in", "s", "experts"},
    "mmoe": {"emb", "gate_in", "experts", "s", "gates", "task_repr"},
    "ple": {"emb", "gate_in", "experts", "s", "task_repr"},
    "stem": {"emb", "gate_in", "copies", "experts", "s", "task_repr"},
    "mptrec": {"emb", "gate_in", "s", "r", "prompts"},
}


def make_batch(features: list[dict] = FEATURES, batch_size: int = B, num_dense: int = NUM_DENSE,
               num_tasks: int = len(TASKS), seed: int = 0) -> dict:
    """A batch with one id per feature except a multi-valued last feature (lengths 0..2)."""
    g = torch.Generator().manual_seed(seed)
    values, lengths = [], []
    for i, f in enumerate(features):
        multi = i == len(features) - 1
        lens = torch.randint(0, 3, (batch_size,), generator=g) if multi else torch.ones(batch_size, dtype=torch.long)
        lengths.append(lens)
        values.append(torch.randint(0, f["num_embeddings"], (int(lens.sum()),), generator=g))
    kjt = KeyedJaggedTensor.from_lengths_sync(keys=[f["name"] for f in features], values=torch.cat(values),
                                              lengths=torch.cat(lengths))
    return {"sparse": kjt, "dense": torch.randn(batch_size, num_dense, generator=g),
            "labels": torch.randint(0, 2, (batch_size, num_tasks), generator=g).float(), "progress": 0.4}


HIDDEN_KEY = {"single": "hidden", "shared_bottom": "bottom_hidden"}


def model_config(name: str, **encoder: object) -> dict:
    """A small config of model `name` (hidden widths [16, 8], towers [8])."""
    part = "task_sparse_features" if name == "stem" else "sparse_features"
    parts = [{"name": part, "embedding_dim": 4}, {"name": "dense_features"}]
    return {"embedding": {"combine": "concat", "parts": parts},
            "encoder": {"name": name, HIDDEN_KEY.get(name, "expert_hidden"): [16, 8], "tower_hidden": [8], **encoder},
            "target": {"name": "mptrec" if name == "mptrec" else "multitask_bce"}}


def build(name: str, **encoder: object):
    torch.manual_seed(0)
    return build_model(model_config(name, **encoder), features=FEATURES, num_dense=NUM_DENSE, tasks=TASKS)


def table_grads(model) -> dict[str, torch.Tensor | None]:
    return {n: p.grad for n, p in model.named_parameters() if ".ebc." in n}


@pytest.mark.parametrize("name", MODELS)
def test_model_builds_trains_and_reaches_embedding_tables(name: str) -> None:
    model = build(name)
    batch = make_batch()
    out = model(batch)
    assert out["logits"].shape == (B, len(TASKS))
    assert torch.isfinite(out["loss"]) and out["task_losses"].shape == (len(TASKS),)
    out["loss"].backward()
    grads = table_grads(model)
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads.values())
    assert all(p.grad is not None for n, p in model.named_parameters() if "classifier" not in n or name == "mptrec")


@pytest.mark.parametrize("name", MODELS)
def test_representations_keys_and_shapes(name: str) -> None:
    model = build(name)
    model.eval()
    reps = model.encoder.representations(model.embedding(make_batch()))
    assert set(reps) == REPR_KEYS[name]
    d = model.encoder.repr_dim
    for key in ("s",):
        if key in reps:
            assert reps[key].shape == (B, d)
    if "task_repr" in reps:
        assert reps["task_repr"].shape == (B, len(TASKS), d)
    if "experts" in reps:
        assert reps["experts"].shape[0] == B and reps["experts"].shape[2] == d


def test_ple_levels_and_expert_counts() -> None:
    model = build("ple", num_levels=3, num_task_experts=2, num_shared_experts=3)
    out = model(make_batch())
    out["loss"].backward()
    reps = model.encoder.representations(model.embedding(make_batch()))
    assert reps["experts"].shape == (B, len(TASKS) * 2 + 3, 8)
    assert reps["gate_in"].shape == (B, 8)


def test_mptrec_outputs_and_loss_terms() -> None:
    model = build("mptrec")
    batch = make_batch()
    hidden = model.encode(batch)
    t = len(TASKS)
    assert hidden["shared_logits"].shape == (B, t)
    assert hidden["task_class_logits"].shape == (t * B, t)
    assert hidden["task_class_labels"].tolist() == [k for k in range(t) for _ in range(B)]
    assert hidden["prompts"].shape == (t, model.encoder.repr_dim)
    out = model.target(hidden, batch)
    labels = batch["labels"]
    fused = F.binary_cross_entropy_with_logits(hidden["logits"], labels, reduction="none").mean(0).sum()
    shared = F.binary_cross_entropy_with_logits(hidden["shared_logits"], labels, reduction="none").mean(0).sum()
    env = F.cross_entropy(hidden["task_class_logits"], hidden["task_class_labels"])
    assert torch.allclose(out["loss"], fused + 0.1 * shared + 0.1 * env)
    assert set(out) >= {"loss", "logits", "task_losses", "shared_task_losses", "env_loss"}


def test_mptrec_logits_follow_from_representations() -> None:
    model = build("mptrec")
    model.eval()
    batch = {k: v for k, v in make_batch().items() if k != "labels"}
    with torch.no_grad():
        out = model.encode(batch)
        emb = model.embedding(batch)
        reps = model.encoder.representations(emb)
        _, _, mixed = model.encoder.fuse(reps["gate_in"], reps["s"], reps["r"].transpose(0, 1))
        logits = model.encoder.towers(mixed).transpose(0, 1)
    assert "task_class_logits" not in out
    assert torch.equal(out["logits"], logits)


def test_gradient_reversal_flips_and_scales_the_gradient() -> None:
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = grad_reverse(x, 0.25)
    assert torch.equal(y, x)
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([-0.25, -0.5, -0.75]))
    assert grl_alpha(0.0) == 0.0
    assert grl_alpha(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    assert grl_alpha(0.5) < grl_alpha(0.9)
    q = torch.tensor(0.3)
    assert torch.allclose(grl_alpha(q), torch.tensor(grl_alpha(0.3)))
    z = torch.ones(2, requires_grad=True)
    grad_reverse(z, grl_alpha(q)).sum().backward()
    assert torch.allclose(z.grad, -torch.full((2,), grl_alpha(0.3)))


def test_mptrec_classifier_gradient_reaches_shared_expert_reversed() -> None:
    model = build("mptrec")
    enc = model.encoder
    batch = make_batch()
    hidden = model.encode(batch)
    env = F.cross_entropy(hidden["task_class_logits"], hidden["task_class_labels"])
    grads = torch.autograd.grad(env, [hidden["s"], enc.classifier[0].weight], retain_graph=True)
    s = hidden["s"].detach().requires_grad_(True)
    gates = hidden["gates"].transpose(0, 1).detach()
    plain = enc.classifier((gates[..., 1:] * s.unsqueeze(0)).reshape(len(TASKS) * B, -1))
    plain_grad = torch.autograd.grad(F.cross_entropy(plain, hidden["task_class_labels"]), s)[0]
    alpha = grl_alpha(batch["progress"])
    assert torch.allclose(grads[0] / -alpha, plain_grad, atol=1e-6)


def test_mptrec_classifier_gives_s_no_gradient_at_the_start() -> None:
    model = build("mptrec")
    batch = {**make_batch(), "progress": torch.tensor(0.0)}
    hidden = model.encode(batch)
    env = F.cross_entropy(hidden["task_class_logits"], hidden["task_class_labels"])
    assert torch.count_nonzero(torch.autograd.grad(env, hidden["s"])[0]) == 0


def test_encoder_saves_and_loads_as_a_pretrained_component(tmp_path: Path) -> None:
    model = build("ple", num_levels=2)
    save_component(model.encoder, tmp_path / "enc", "encoders")
    loaded = ENCODERS.build({"pretrained": str(tmp_path / "enc")})
    emb = model.embedding(make_batch())
    model.eval()
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded(emb, {})["logits"], model.encoder(emb, {})["logits"])


def test_stem_task_loss_leaves_other_tasks_embeddings_alone() -> None:
    model = build("stem")
    emb_part = model.embedding.parts["task_sparse_features"]
    out = model.encode(make_batch())
    F.binary_cross_entropy_with_logits(out["logits"][:, 0], torch.ones(B)).backward()
    grads = dict(model.embedding.named_parameters())
    prefix = "parts.task_sparse_features.ebc.embedding_bags"
    for f in FEATURES:
        own = grads[f"{prefix}.{emb_part.table_name(f['name'], 0)}.weight"].grad
        shared = grads[f"{prefix}.{emb_part.table_name(f['name'], len(TASKS))}.weight"].grad
        assert own is not None and own.abs().sum() > 0
        assert shared is not None and shared.abs().sum() > 0
        for other in range(1, len(TASKS)):
            name = f"{prefix}.{emb_part.table_name(f['name'], other)}.weight"
            g = grads[name].grad
            assert g is None or torch.count_nonzero(g) == 0
    experts = model.encoder.experts.net[0].weight.grad  # [E, in, out]: task 0, task 1, task 2, shared
    assert experts[0].abs().sum() > 0 and experts[3].abs().sum() > 0
    assert torch.count_nonzero(experts[1]) == 0 and torch.count_nonzero(experts[2]) == 0


def test_stem_forward_uses_every_task_expert() -> None:
    model = build("stem")
    model.eval()
    batch = make_batch()
    with torch.no_grad():
        before = model.encode(batch)["logits"].clone()
        model.encoder.experts.net[0].weight[2].add_(1.0)
        after = model.encode(batch)["logits"]
    assert not torch.allclose(before[:, 0], after[:, 0])


def test_task_sparse_features_layout_is_copy_major() -> None:
    model = build("stem")
    part = model.embedding.parts["task_sparse_features"]
    batch = make_batch()
    out = part(batch)
    assert out.shape == (B, (len(TASKS) + 1) * len(FEATURES) * 4)
    weights = dict(part.ebc.embedding_bags.named_parameters())
    ids = batch["sparse"]["item"].to_dense()
    for copy in range(len(TASKS) + 1):
        table = weights[f"{part.table_name('item', copy)}.weight"]
        start = copy * part.copy_dim + 4  # item is the second feature of each copy
        assert torch.allclose(out[0, start:start + 4], table[ids[0]].sum(0))


def test_task_copies_group_tables_as_pretrain_stack_does() -> None:
    from pretrain_stack import EMBEDDINGS

    features = [{"name": n, "num_embeddings": r} for n, r in (("a", 10), ("b", 7), ("c", 5))]
    spec = {"features": features, "embedding_dim": 4, "shared_tables": {"ab": ["a", "b"]}}
    single = EMBEDDINGS.build({"name": "sparse_features", **spec})
    copies = EMBEDDINGS.build({"name": "task_sparse_features", "tasks": ["x", "y"], **spec})
    assert [t.name for t in copies.ebc.embedding_bag_configs()] == [
        f"t_{t}__{c}" for c in ("task0", "task1", "shared") for t in ("ab", "c")]
    assert copies.feature_order == single.feature_order and copies.copy_dim == single.output_dim
    for pooling, bad in (("max", features), ("sum", [])):
        with pytest.raises(ConfigError) as err:
            EMBEDDINGS.build({"name": "task_sparse_features", "tasks": ["x"], "features": bad, "pooling": pooling})
        assert err.value.key == ("pooling" if bad else "features")


def test_stem_rejects_an_input_without_task_copies() -> None:
    cfg = model_config("stem")
    cfg["embedding"]["parts"][0]["name"] = "sparse_features"
    with pytest.raises(ConfigError) as err:
        build_model(cfg, features=FEATURES[:2], num_dense=NUM_DENSE, tasks=TASKS[:2])
    assert err.value.key == "model.embedding"


@pytest.mark.parametrize("name,key,value", [("mmoe", "num_experts", 0), ("ple", "num_levels", 0),
                                            ("mptrec", "expert_hidden", []), ("single", "dropout", 1.5),
                                            ("mptrec", "activation", "swish")])
def test_bad_settings_name_their_key(name: str, key: str, value: object) -> None:
    with pytest.raises(ConfigError) as err:
        build(name, **{key: value})
    assert err.value.key.endswith(key)


def test_unknown_encoder_key_is_rejected_by_the_registry() -> None:
    with pytest.raises(ConfigError) as err:
        build("mmoe", num_expert=3)
    assert err.value.key == "model.encoder.num_expert"


def test_batched_linear_matches_separate_linears() -> None:
    torch.manual_seed(0)
    layer = BatchedLinear(3, 5, 4)
    x = torch.randn(3, 7, 5)
    for k in range(3):
        expected = x[k] @ layer.weight[k] + layer.bias[k]
        assert torch.allclose(layer(x)[k], expected, atol=1e-6)
        assert torch.allclose(layer(x[0])[k], x[0] @ layer.weight[k] + layer.bias[k], atol=1e-6)


def test_appending_a_task_group_keeps_earlier_outputs() -> None:
    torch.manual_seed(0)
    groups = TaskGroups(BatchedMLP(2, 5, [4]), 2)
    x = torch.randn(7, 5)
    before = groups(x)
    groups.append(BatchedMLP(1, 5, [4]))
    after = groups(x)
    assert groups.num_tasks == 3 and after.shape == (3, 7, 4)
    assert torch.equal(after[:2], before)
    per_task = torch.randn(3, 7, 5)
    assert torch.equal(groups(per_task)[:2], groups.groups[0](per_task[:2]))


def _recipes() -> list[Path]:
    return sorted(CONFIG_DIR.glob("*.yaml"))


def test_every_model_and_dataset_has_a_recipe() -> None:
    names = {p.stem for p in _recipes()}
    assert {f"{m}_{d}" for m in MODELS for d in ("adult", "movielens")} <= names


@pytest.mark.parametrize("path", _recipes(), ids=lambda p: p.stem)
def test_recipe_validates_and_builds(path: Path) -> None:
    cfg = yaml.safe_load(path.read_text())
    assert set(cfg) == {"model", "train"}
    assert set(cfg["train"]) <= TRAIN_KEYS
    features = [{"name": f"f{i}", "num_embeddings": 10 + 10 * i} for i in range(10)]
    tasks = ["t0", "t1"]
    validate_model_config(cfg["model"], {"tasks": tasks})
    sequences = [{"name": "f9", "max_len": 4, "num_embeddings": 100, "candidate": "f0", "actions": None,
                  "num_actions": 0}]  # the multi-valued f9 as a sequence sharing f0's table (`*_seq` recipes)
    model = build_model(cfg["model"], features=features, num_dense=0, tasks=tasks, sequences=sequences)
    batch = make_batch(features, num_dense=0, num_tasks=2)
    out = model(batch)
    assert out["logits"].shape == (B, 2) and torch.isfinite(out["loss"])
