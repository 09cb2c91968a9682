"""Pretrained sequence encoders: training-split-only pretraining, vocabulary mapping, freezing, safe loading."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import mtrec
from mtrec.errors import UsageError
from mtrec.models.sequence import SequenceEmbedding, item_rows
from mtrec.pretraining import pretrain_encoder, training_interactions
from mtrec.recipe import load_recipe
from pretrain_stack.data.sequences import build_sequences
from pretrain_stack.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = ["--model.hidden_size", "16", "--epochs", "1", "--data.max_users", "120", "--progress", "false"]


@pytest.fixture(scope="module")
def movielens():
    return mtrec.datasets.load("movielens-100k", sequences=True)


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("enc") / "movielens-encoder"
    pretrain_encoder("movielens-100k", out, overrides=TINY)
    return out


def test_item_rows_maps_pretrained_tokens_onto_mtrec_ids() -> None:
    assert item_rows(np.array([50, 10, 30]), np.array([10, 99, 30, 50])).tolist() == [2, 0, 3, 1]
    assert item_rows(np.array(["b", "a"]), np.array(["a", "c"], dtype=object)).tolist() == [2, 0]
    assert item_rows(np.array([1, 2]), np.array(["1"], dtype=object)).tolist() == [0]


def test_pretraining_reads_only_the_training_split(movielens) -> None:
    ratings = training_interactions("movielens-100k", movielens.train)
    assert len(ratings) == len(movielens.train)
    assert ratings["timestamp"].max() <= movielens.valid["timestamp"].min()
    key = ["user_id", "item_id", "timestamp"]
    seen = set(map(tuple, ratings[["user_id", "movie_id", "timestamp"]].to_numpy().tolist()))
    held_out = pd.concat([movielens.valid, movielens.test])[key]
    assert seen.isdisjoint(map(tuple, held_out.to_numpy().tolist()))
    seqs = build_sequences(ratings)
    assert sum(len(s) for s in seqs.sequences) <= len(movielens.train)
    tokens = set(np.concatenate(seqs.sequences).tolist())
    assert set(seqs.item_ids[np.array(sorted(tokens)) - 1]) <= set(movielens.train["item_id"])


def test_pretrain_writes_what_a_sequence_part_loads(encoder_dir: Path) -> None:
    for part in ("encoder", "embedding/item", "embedding/position"):
        assert (encoder_dir / part / "weights.pt").exists()
    source = json.loads((encoder_dir / "source.json").read_text())
    assert source["split"] == "train" and source["rows"] == 80000
    with pytest.raises(UsageError, match="already holds an encoder"):
        pretrain_encoder("movielens-100k", encoder_dir, overrides=TINY)


def pretrained_recipe(encoder_dir: Path, freeze: bool, **part: object):
    recipe = load_recipe("mptrec", dataset="movielens_seq")
    for p in recipe.model["embedding"]["parts"]:
        if p["name"] == "sequence":
            p.update({"hidden_size": 16, "layers": 2, "heads": 2, "pooling": "last", "pretrained": str(encoder_dir),
                      "freeze": freeze, **part})
    return recipe


def pretrained_state(encoder_dir: Path) -> tuple[dict, dict, list]:
    items = torch.load(encoder_dir / "embedding/item/weights.pt", weights_only=True)["table.weight"]
    encoder = torch.load(encoder_dir / "encoder/weights.pt", weights_only=True)
    return items, encoder, json.loads((encoder_dir / "items.json").read_text())["item_ids"]


def test_frozen_pretrained_encoder_is_mapped_kept_and_checkpointed(movielens, encoder_dir: Path, tmp_path) -> None:
    train, test = movielens.train.iloc[:3000], movielens.test.iloc[:500]
    model = mtrec.build_model("mptrec", schema=movielens.schema, recipe=pretrained_recipe(encoder_dir, True))
    mtrec.train(model, train, epochs=1, batch_size=256, seed=0, progress=False, compile=False)
    part = next(m for m in model.network.modules() if isinstance(m, SequenceEmbedding))
    items, encoder, item_ids = pretrained_state(encoder_dir)
    token = {v: i + 1 for i, v in enumerate(item_ids)}
    values = model.vocabs.values["item_id"]
    mapped = [(j + 1, token[v]) for j, v in enumerate(values.tolist()) if v in token]
    fresh = [j + 1 for j, v in enumerate(values.tolist()) if v not in token]
    assert mapped and fresh  # 120 pretraining users saw only part of the catalogue
    table = part.item_table()
    rows, toks = map(torch.tensor, zip(*mapped))
    assert torch.equal(table[rows], items[toks])  # mapped and, being frozen, unchanged by training
    assert all(torch.equal(part.encoder.state_dict()[k], v) for k, v in encoder.items())
    assert part.tables.embeddings["t_history_ratings"].weight.requires_grad  # the action table still trains
    assert not part.encoder.training  # a frozen encoder runs without dropout while the rest trains
    copied = tmp_path / "enc"
    shutil.copytree(encoder_dir, copied)
    path = mtrec.save(model, tmp_path / "model")
    shutil.rmtree(copied)  # a checkpoint carries the weights: loading never reads the pretrained directory
    assert np.array_equal(mtrec.load(path).predict(test).to_numpy(), model.predict(test).to_numpy())


def test_fine_tuned_pretrained_encoder_trains(movielens, encoder_dir: Path) -> None:
    model = mtrec.build_model("mptrec", schema=movielens.schema, recipe=pretrained_recipe(encoder_dir, False))
    mtrec.train(model, movielens.train.iloc[:2000], epochs=1, batch_size=256, seed=0, progress=False,
                compile=False)
    part = next(m for m in model.network.modules() if isinstance(m, SequenceEmbedding))
    _, encoder, _ = pretrained_state(encoder_dir)
    assert not all(torch.equal(part.encoder.state_dict()[k], v) for k, v in encoder.items())


def test_architecture_mismatch_names_the_key(movielens, encoder_dir: Path) -> None:
    model = mtrec.build_model("mptrec", schema=movielens.schema,
                              recipe=pretrained_recipe(encoder_dir, True, layers=1))
    with pytest.raises(ConfigError, match=r"model.embedding.sequence.layers: 1 does not match"):
        mtrec.train(model, movielens.train.iloc[:500], epochs=1, progress=False, compile=False)


class Payload:
    """An object only a pickle-executing load would rebuild."""


def test_pretrained_weights_load_without_running_pickles(movielens, encoder_dir: Path, tmp_path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(encoder_dir, bad)
    torch.save({"table.weight": Payload()}, bad / "embedding/item/weights.pt")
    model = mtrec.build_model("mptrec", schema=movielens.schema, recipe=pretrained_recipe(bad, True))
    with pytest.raises(ConfigError, match=r"model.embedding.sequence.pretrained: cannot read .*weights.pt"):
        mtrec.train(model, movielens.train.iloc[:500], epochs=1, progress=False, compile=False)


def test_freeze_needs_a_pretrained_encoder() -> None:
    with pytest.raises(ConfigError, match="model.embedding.sequence.freeze"):
        SequenceEmbedding([{"name": "h", "max_len": 4, "num_embeddings": 5, "candidate": None, "actions": None,
                            "num_actions": 0}], hidden_size=8, freeze=True)


def test_cli_pretrain_refuses_an_existing_encoder(encoder_dir: Path, capsys) -> None:
    from mtrec.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["pretrain", "--dataset", "movielens-100k", "--out", str(encoder_dir)])
    assert exit_info.value.code == 2
    assert "already holds an encoder; pass --overwrite" in capsys.readouterr().err
