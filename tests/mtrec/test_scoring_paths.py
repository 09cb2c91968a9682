"""Every scoring path gives the same bits: model.predict, the reloaded checkpoint, the fp32 Predictor, batch
scoring on a Ray Data actor, and the Ray Serve endpoint on loopback, for a model with an added task; the old tasks'
columns equal the model's before the task was added."""

from __future__ import annotations

import copy
import json
import socket
import urllib.request

import numpy as np
import pandas as pd
import pytest

import mtrec
from mtrec.ray_session import ray_session
from mtrec.quant import QuantizedModel

LABELS = ["income", "married", "education"]


@pytest.fixture(scope="module")
def extended(trained_adult_mptrec, adult, tmp_path_factory):
    """The shared trained model with `education` added by prompt tuning, and its checkpoint."""
    model = copy.deepcopy(trained_adult_mptrec[0])
    mtrec.add_task(model, "education", adult.train.head(4000), valid=adult.valid.head(1000), epochs=1, progress=False)
    return model, mtrec.save(model, tmp_path_factory.mktemp("scoring") / "model")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _served(checkpoint, rows: list[dict]) -> np.ndarray:
    """POST /predict to the Serve deployment of `checkpoint` on loopback (on the current Ray session)."""
    from mtrec.serve import start, stop

    try:
        url = start(checkpoint, replicas=1, port=_free_port())
        request = urllib.request.Request(url + "/predict", data=json.dumps(rows).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            out = json.loads(response.read())
    finally:
        stop()
    assert out["tasks"] == LABELS
    return np.array([[p[t] for t in LABELS] for p in out["predictions"]], dtype=np.float32)


def test_every_scoring_path_gives_the_same_bits(extended, trained_adult_mptrec, adult, tmp_path):
    model, checkpoint = extended
    rows = adult.test.head(300).drop(columns=LABELS).reset_index(drop=True)
    expected = model.predict(rows).to_numpy()
    assert expected.shape == (300, 3) and expected.dtype == np.float32
    assert np.array_equal(expected[:, :2], trained_adult_mptrec[0].predict(rows).to_numpy())  # old tasks untouched

    scored = {"reloaded": mtrec.load(checkpoint).predict(rows).to_numpy(),
              "fp32 predictor": QuantizedModel.from_model(mtrec.load(checkpoint), {}).predict(rows).to_numpy()}

    source = tmp_path / "rows.parquet"
    rows.assign(uid=[f"u{i}" for i in range(len(rows))]).to_parquet(source)
    with ray_session(num_cpus=2, dashboard=False):
        result = mtrec.batch_predict(checkpoint, source, tmp_path / "out", workers=1, id_column="uid",
                                     progress=False)
        scored["serve"] = _served(checkpoint, rows.to_dict(orient="records"))  # JSON floats: float32 exactly
    assert result.rows == result.scored == 300
    batch = pd.read_parquet(tmp_path / "out" / "scores")
    assert batch["uid"].tolist() == [f"u{i}" for i in range(300)]
    scored["batch scoring"] = batch[LABELS].to_numpy()
    for path, probs in scored.items():
        assert probs.dtype == np.float32 and np.array_equal(probs, expected), \
            (path, int((probs != expected).sum()), float(np.abs(probs - expected).max()))
