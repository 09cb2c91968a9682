"""Shipped recipes build and train a step; sequences, batches and reuse of saved components behave as documented."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pretrain_stack import build_model, load_config, save_component
from pretrain_stack.data import SequenceTask, Vocab, build_sequences, load_ratings, mlm_batch, seq2seq_batch, windows
from pretrain_stack.pretrain import PretrainConfig, objective_of, save_outputs

CONFIGS = Path(__file__).resolve().parents[2] / "pretrain_stack" / "configs"
SHIPPED = sorted(CONFIGS.glob("*.yaml"))


@pytest.fixture(scope="module")
def slice_data():
    return build_sequences(load_ratings(), max_users=40)


def recipe(path: Path, tmp_path: Path) -> PretrainConfig:
    """A shipped config, with `runs/sasrec/` (where reuse recipes look) pointed at tmp_path."""
    text = path.read_text().replace("runs/sasrec/", f"{tmp_path}/sasrec/")
    local = tmp_path / path.name
    local.write_text(text)
    return load_config(PretrainConfig, local, ["--output-dir", str(tmp_path / "out")])


def test_sequences_order_by_time_with_stable_ties_and_split() -> None:
    ratings = pd.DataFrame({"user_id": [2, 1, 1, 1, 1, 2, 2],
                            "movie_id": [30, 20, 10, 40, 30, 10, 20],
                            "rating": [1] * 7,
                            "timestamp": [5, 9, 3, 3, 1, 5, 4]})
    data = build_sequences(ratings)
    assert data.vocab == Vocab(4) and data.vocab.mask_id == 5 and data.vocab.bos_id == 6 and data.vocab.size == 7
    assert list(data.item_ids) == [10, 20, 30, 40]
    assert list(data.user_ids) == [1, 2]
    # user 1: t=1 movie 30, t=3 movies 10 then 40 (file order), t=9 movie 20
    assert data.sequences[0].tolist() == [3, 1, 4, 2]
    assert data.sequences[1].tolist() == [2, 3, 1]
    assert [s.tolist() for s in data.train()] == [[3, 1], [2]]
    assert data.targets("valid").tolist() == [4, 3] and data.targets("test").tolist() == [2, 1]
    assert data.history("test")[0].tolist() == [3, 1, 4]
    assert len(build_sequences(ratings, max_users=1).sequences) == 1


def test_windows_keep_the_newest_items() -> None:
    seq = np.arange(1, 12)
    assert [w.tolist() for w in windows([seq], 5)] == [[7, 8, 9, 10, 11]]
    assert [w.tolist() for w in windows([seq], 5, stride=5)] == [[7, 8, 9, 10, 11], [2, 3, 4, 5, 6]]  # [1] is too short
    assert [w.tolist() for w in windows([np.arange(1, 4)], 5, stride=2)] == [[1, 2, 3]]


def test_mlm_batch_masks_and_labels_only_hidden_items() -> None:
    vocab = Vocab(50)
    rows = [np.arange(1, 31), np.arange(5, 9)]
    batch = mlm_batch(rows, vocab, mask_prob=0.3, mask_last_prob=0.0, rng=np.random.default_rng(0))
    hidden = batch["src"] == vocab.mask_id
    assert hidden.any(dim=1).all()
    assert torch.equal(hidden, batch["labels"] > 0)
    assert torch.equal(batch["labels"][0][hidden[0]], torch.arange(1, 31)[hidden[0]])
    last = mlm_batch(rows, vocab, mask_prob=0.3, mask_last_prob=1.0, rng=np.random.default_rng(0))
    assert (last["labels"] > 0).sum().item() == 2 and last["labels"][1, 3].item() == 8


def test_seq2seq_batch_splits_prefix_and_continuation() -> None:
    vocab = Vocab(50)
    row = np.arange(1, 21)
    batch = seq2seq_batch([row] * 8, vocab, max_src=6, max_tgt=3, rng=np.random.default_rng(1))
    for src, tgt_in, labels in zip(batch["src"], batch["tgt_in"], batch["labels"]):
        src, labels = src[src > 0], labels[labels > 0]
        assert tgt_in[0] == vocab.bos_id and len(src) <= 6 and 1 <= len(labels) <= 3
        assert labels[0] == src[-1] + 1  # the decoder continues right after the prefix
        assert torch.equal(tgt_in[1:len(labels)], labels[:-1])


@pytest.mark.parametrize("objective", ["lm", "mlm", "seq2seq"])
def test_eval_batches_never_show_the_target(slice_data, objective: str) -> None:
    task = SequenceTask(slice_data, objective, max_len=10)
    for split in ("valid", "test"):
        batch = next(task.eval_batches(split, batch_size=8))
        history = slice_data.history(split)[:8]
        for i, row in enumerate(batch["src"]):
            pos = int(batch["positions"][i])
            if objective == "seq2seq":
                assert batch["tgt_in"][i].tolist() == [slice_data.vocab.bos_id] and pos == 0
                assert row[row > 0].tolist() == history[i][-10:].tolist()
            elif objective == "mlm":
                assert row[pos] == slice_data.vocab.mask_id and row[:pos].tolist() == history[i][-9:].tolist()
            else:
                assert row[:pos + 1].tolist() == history[i][-10:].tolist()


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_config_builds_and_trains_one_step(path: Path, tmp_path: Path, slice_data) -> None:
    if "pretrained" in path.read_text():
        base = recipe(CONFIGS / "sasrec.yaml", tmp_path)
        save_outputs(build_model(base.model, vocab_size=slice_data.vocab.size, max_len=base.data.max_len),
                     tmp_path / "sasrec")
    cfg = recipe(path, tmp_path)
    torch.manual_seed(0)
    model = build_model(cfg.model, vocab_size=slice_data.vocab.size, max_len=cfg.data.max_len)
    task = SequenceTask(slice_data, objective_of(cfg), cfg.data.max_len, stride=cfg.data.stride)
    batch = next(task.train_batches(16, np.random.default_rng(0)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    loss = model(batch)["loss"]
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and loss.item() > 0
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("encoder.") for k in changed) and any(k.startswith("target.") for k in changed)


def test_saved_encoder_loads_back_identically_with_weights_only(tmp_path: Path, slice_data, monkeypatch) -> None:
    cfg = recipe(CONFIGS / "sasrec.yaml", tmp_path)
    model = build_model(cfg.model, vocab_size=slice_data.vocab.size, max_len=cfg.data.max_len).eval()
    save_component(model.encoder, tmp_path / "enc", "encoders")
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    reused = build_model({**cfg.model, "encoder": {"pretrained": str(tmp_path / "enc")}},
                         vocab_size=slice_data.vocab.size, max_len=cfg.data.max_len).eval()
    assert calls == [True]
    reused.embedding.load_state_dict(model.embedding.state_dict())
    batch = next(SequenceTask(slice_data, "lm", 20).eval_batches("test", 8))
    with torch.no_grad():
        emb = model.embedding(batch)
        assert torch.equal(model.encoder(emb, batch), reused.encoder(emb, batch))
    frozen = build_model({**cfg.model, "encoder": {"pretrained": str(tmp_path / "enc"), "freeze": True}},
                         vocab_size=slice_data.vocab.size, max_len=cfg.data.max_len)
    assert not any(p.requires_grad for p in frozen.encoder.parameters())
