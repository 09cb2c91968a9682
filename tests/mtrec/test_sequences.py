"""Sequence features: schema, truncation, shared vocabulary, the MovieLens history sequence and the `sequence`
embedding part (pretrain_stack transformer + last / mean / target-attention pooling) in every backbone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import mtrec
from mtrec.data.batches import encode_frame, keep_newest
from mtrec.data.schema import Schema, SequenceFeature
from mtrec.data.vocab import Vocabularies
from mtrec.errors import DataError
from mtrec.recipe import MODELS, Recipe, load_recipe
from pretrain_stack.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")


def toy_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Users with item histories: the newest item decides `click` (items 1..9 clicked, 10..29 not), `buy` is 1 when
    the candidate item is in the history (a signal for target attention)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 9, n)
    hist = [rng.integers(1, 30, k) for k in lengths]
    item = rng.integers(1, 30, n)
    last = np.array([h[-1] if len(h) else 0 for h in hist])
    click = ((last < 10) & (lengths > 0)).astype(np.int64)
    return pd.DataFrame({"user": rng.integers(0, 40, n), "item": item, "hist": hist,
                         "acts": [rng.integers(1, 4, len(h)) for h in hist], "click": click,
                         "buy": np.array([i in h for i, h in zip(item, hist)], dtype=np.int64)})


def test_schema_from_frame_sequences() -> None:
    df = toy_frame()
    schema = Schema.from_frame(df, tasks=["click", "buy"],
                               sequences={"hist": {"max_len": 5, "shared_with": "item", "actions": "acts"}})
    assert schema.sequences == {"hist": SequenceFeature(5, "item", "acts")}
    assert {"hist", "acts"} <= set(schema.multi_valued) and schema.sequence_columns == ["hist", "acts"]
    assert schema.vocabulary_of("hist") == "item" and schema.vocabulary_of("acts") == "acts"
    assert Schema.from_dict(schema.to_dict()) == schema
    plain = Schema.from_frame(df, tasks=["click", "buy"], sequences=["hist"])
    assert plain.sequences == {"hist": SequenceFeature()}


@pytest.mark.parametrize("spec, message", [
    ({"hist": {"max_len": 0}}, r"schema.sequences.hist.max_len"),
    ({"hist": {"maxlen": 3}}, r"schema.sequences.hist.maxlen: unknown key"),
    ({"hist": {"shared_with": "nope"}}, r"schema.sequences.hist.shared_with"),
    ({"missing": {}}, r"sequence column 'missing' is not in the frame"),
])
def test_schema_sequence_errors_name_the_key(spec: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        Schema.from_frame(toy_frame(), tasks=["click"], sequences=spec)


def test_keep_newest_truncates_from_the_oldest_end() -> None:
    lengths, values = keep_newest(np.array([3, 0, 5, 1]), np.arange(9), 2)
    assert lengths.tolist() == [2, 0, 2, 1] and values.tolist() == [1, 2, 6, 7, 8]


def test_encoding_truncates_and_shares_the_candidate_vocabulary() -> None:
    df = toy_frame()
    schema = Schema.from_frame(df, tasks=["click"], sequences={"hist": {"max_len": 3, "shared_with": "item",
                                                                        "actions": "acts"}})
    vocabs = Vocabularies.fit(df, schema)
    batch = encode_frame(df, schema, vocabs).take(np.arange(len(df)))
    jt = batch.sparse.to_dict()
    want = [vocabs.encode("item", np.asarray(h[-3:], dtype=np.int64)).tolist() for h in df["hist"]]
    got = jt["hist"].to_dense()
    assert [g.tolist() for g in got] == want
    assert [g.tolist() for g in jt["acts"].to_dense()] == [vocabs.encode("acts", a[-3:]).tolist() for a in df["acts"]]


def test_action_column_must_be_parallel() -> None:
    df = toy_frame(50)
    acts = list(df["acts"])
    acts[7] = np.r_[acts[7], 1]
    df["acts"] = acts
    schema = Schema.from_frame(df, tasks=["click"], sequences={"hist": {"actions": "acts"}})
    with pytest.raises(DataError, match=r"column 'acts', row 7: has \d+ values but sequence 'hist'"):
        encode_frame(df, schema, Vocabularies.fit(df.drop(index=7), schema))


def test_movielens_history_sequence_uses_only_earlier_ratings() -> None:
    data = mtrec.datasets.load("movielens-100k", sequences=True)
    assert data.schema.sequences == {"history": SequenceFeature(50, "item_id", "history_ratings")}
    assert "hist_items" not in data.schema.sparse and data.schema.source == "movielens_seq"
    full = pd.concat([data.train, data.valid, data.test])
    by_user = {u: g for u, g in full[["user_id", "item_id", "rating", "timestamp"]].groupby("user_id")}
    for _, row in full.sample(300, random_state=1).iterrows():
        g = by_user[row["user_id"]]
        earlier = g[g["timestamp"] < row["timestamp"]].sort_values("timestamp", kind="stable").tail(50)
        assert list(row["history"]) == earlier["item_id"].tolist()
        assert list(row["history_ratings"]) == earlier["rating"].tolist()


def seq_recipe(model: str, pooling: str, **part: object) -> Recipe:
    """The shipped `<model>_movielens_seq` recipe shrunk for tests: small transformer, `pooling`."""
    recipe = load_recipe(model, dataset="movielens_seq")
    for p in recipe.model["embedding"]["parts"]:
        if p["name"] == "sequence":
            p.update({"hidden_size": 16, "layers": 1, "heads": 2, "pooling": pooling, **part})
    if "shared_inputs" in recipe.model["encoder"]:
        recipe.model["encoder"]["shared_inputs"] = 16
    return recipe




@pytest.fixture(scope="module")
def toy() -> tuple[pd.DataFrame, pd.DataFrame, Schema]:
    df = toy_frame(2000, seed=0)
    schema = Schema.from_frame(df, tasks=["click", "buy"], sparse=["user", "item"],
                               sequences={"hist": {"max_len": 6, "shared_with": "item", "actions": "acts"}})
    return df.iloc[:1600], df.iloc[1600:], schema


def test_last_pooling_learns_an_order_signal(toy, tmp_path) -> None:
    train, test, schema = toy
    model = mtrec.build_model("mptrec", schema=schema, recipe=seq_recipe("mptrec", "last"))
    mtrec.train(model, train, epochs=3, batch_size=64, seed=0, progress=False, compile=False)
    auc = mtrec.evaluate(model, test)["click"]["auc"]
    assert auc > 0.95, auc  # the label is decided by the newest history item alone
    path = mtrec.save(model, tmp_path / "m")
    assert np.array_equal(mtrec.load(path).predict(test).to_numpy(), model.predict(test).to_numpy())


def small_part(pooling: str, **kw: object):
    from mtrec.models.sequence import SequenceEmbedding

    torch.manual_seed(0)
    return SequenceEmbedding([{"name": "h", "max_len": 4, "num_embeddings": 10, "candidate": "c", "actions": None,
                               "num_actions": 0}], hidden_size=8, heads=2, pooling=pooling, **kw).eval()


def small_kjt():
    from torchrec import KeyedJaggedTensor

    return KeyedJaggedTensor.from_lengths_sync(["h", "c"], torch.tensor([3, 4, 5, 1, 2, 9]),
                                               torch.tensor([0, 4, 1, 1]))


def test_pooling_reads_only_real_positions() -> None:
    kjt = small_kjt()
    for pooling in ("last", "mean", "target_attention"):
        part = small_part(pooling)
        mask = torch.tensor([[False] * 4, [True] * 4])
        x = part.tables(kjt)
        seq = torch.zeros(2, 4, 8)
        seq[mask] = x["h"].values()
        h = part.encoder(seq + part.position.weight, {"src": mask.long()})
        out = part({"sparse": kjt})
        assert torch.equal(out[0], torch.zeros(8))  # an empty history pools to zeros
        want = {"last": h[1, 3], "mean": h[1].mean(0)}.get(pooling)
        if want is not None:
            torch.testing.assert_close(out[1], want)
        else:
            q = x["c"].values()[1].expand(4, -1)
            w = torch.sigmoid(part.attention(torch.cat([q, h[1], q - h[1], q * h[1]], 1))).squeeze(1)
            torch.testing.assert_close(out[1], (w[:, None] * h[1]).sum(0))


@pytest.mark.parametrize("name", MODELS)
def test_every_backbone_reads_the_sequence(toy, name: str) -> None:
    train, test, schema = toy
    model = mtrec.build_model(name, schema=schema, recipe=seq_recipe(name, "target_attention"))
    mtrec.train(model, train, epochs=1, batch_size=128, seed=0, max_steps=3, progress=False, compile=False)
    part = next(m for m in model.network.modules() if type(m).__name__ == "SequenceEmbedding")
    assert part.feature == "hist" and part.candidate == "item"
    probs = model.predict(test.iloc[:50])
    assert probs.shape == (50, 2) and np.isfinite(probs.to_numpy()).all()


def test_a_schema_sequence_needs_a_sequence_part(toy) -> None:
    train, _, schema = toy
    model = mtrec.build_model("mptrec", schema=schema, dataset="movielens")
    with pytest.raises(ConfigError, match="schema sequence 'hist' is read by no `sequence` part"):
        mtrec.train(model, train, epochs=1, progress=False)


def test_gauc_is_the_impression_weighted_per_user_auc_and_matches_torchrec() -> None:
    from torchrec.metrics.calibration import compute_calibration
    from torchrec.metrics.gauc import compute_gauc_3d

    from mtrec.train.metrics import auc, calibration, gauc, group_aucs

    rng = np.random.default_rng(0)
    users = rng.integers(0, 60, 3000)
    scores = rng.random(3000)
    labels = (rng.random(3000) < 0.2 + 0.6 * scores * (users % 3 > 0)).astype(np.float32)
    labels[users == 7] = 1.0  # a single-class user is skipped
    scores[:300] = np.round(scores[:300], 1)  # ties count 1/2, as in auc
    aucs, n = group_aucs(labels, scores, users)
    loop = {u: auc(labels[users == u], scores[users == u]) for u in range(60)}
    assert np.isnan(aucs[7]) and np.isnan(loop[7])
    ok = [u for u in range(60) if not np.isnan(loop[u])]
    np.testing.assert_allclose(aucs[ok], [loop[u] for u in ok], rtol=0, atol=1e-12)
    m = gauc(labels, scores, users)
    weighted = sum(loop[u] * (users == u).sum() for u in ok) / sum((users == u).sum() for u in ok)
    assert m["gauc_groups"] == 59 and abs(m["gauc"] - weighted) < 1e-12
    untied = rng.random(3000)  # torchrec's definition, unweighted, on scores without ties
    order = np.argsort(users, kind="stable")
    counts = np.bincount(users)
    width = counts.max()
    pad = lambda x: torch.tensor(np.stack([np.r_[x[order][s:s + c], np.zeros(width - c)]  # noqa: E731
                                           for s, c in zip(np.r_[0, np.cumsum(counts)[:-1]], counts)]))[None]
    ref = compute_gauc_3d(pad(untied), pad(labels.astype(np.float64)), pad(np.ones(3000)))
    ours = gauc(labels, untied, users)
    assert abs(ours["gauc_unweighted"] - float(ref["auc_sum"][0] / ref["num_samples"][0])) < 1e-6
    p = torch.tensor(scores)[None]
    y = torch.tensor(labels, dtype=torch.float64)[None]
    want = compute_calibration((p * 1).sum(-1), y.sum(-1))
    assert abs(calibration(labels, scores) - float(want[0])) < 1e-9


def test_evaluate_reports_gauc_and_calibration_when_a_user_column_is_named(toy) -> None:
    train, test, schema = toy
    named = Schema.from_dict({**schema.to_dict(), "user": "user"})
    model = mtrec.build_model("mptrec", schema=named, recipe=seq_recipe("mptrec", "last"))
    mtrec.train(model, train, epochs=1, batch_size=128, seed=0, max_steps=2, progress=False, compile=False)
    metrics = mtrec.evaluate(model, test)
    probs = model.predict(test)
    from mtrec.train.metrics import gauc, task_metrics
    from mtrec.workflows import format_metrics

    for task in ("click", "buy"):
        want = gauc(test[task].to_numpy(), probs[task].to_numpy(), test["user"].to_numpy())["gauc"]
        assert abs(metrics[task]["gauc"] - want) < 1e-12
        assert abs(metrics[task]["calibration"] - probs[task].mean() / test[task].mean()) < 1e-5
    assert "gauc" not in task_metrics(test[["click"]].to_numpy(), probs[["click"]].to_numpy(), ["click"])["click"]
    text = format_metrics("test", metrics)
    assert "GAUC" in text and "calib" in text
