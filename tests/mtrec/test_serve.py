"""The prediction service: the HTTP contract without Ray, then Ray Serve on loopback started and stopped in-test.

The end-to-end test starts a one-replica local cluster, checks valid and invalid requests (400 with the
DataError message, never 500, the replica still answering afterwards), and checks that stopping leaves no
process of that cluster and no listening port behind.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import mtrec
from mtrec.quant import QuantizedModel, preset_plan
from mtrec.serve.protocol import MAX_ROWS, error_body, parse_rows, predictions

LABELS = ["income", "married", "education"]


def test_parse_rows_accepts_lists_of_objects_and_rejects_the_rest():
    assert parse_rows(b'[{"a": 1}]') == [{"a": 1}]
    for body, message in ((b"{oops", "not valid JSON"), (b"\xff", "not valid JSON"), (b'{"a": 1}', "a JSON dict"),
                          (b"[]", "an empty list"), (b'"rows"', "a JSON str")):
        with pytest.raises(mtrec.DataError, match=message):
            parse_rows(body)
    with pytest.raises(mtrec.DataError, match=f"at most {MAX_ROWS}"):
        parse_rows(json.dumps([{}] * (MAX_ROWS + 1)).encode())


def test_predictions_and_error_bodies():
    assert predictions(["a", "b"], np.array([[0.25, 0.5]], dtype=np.float32)) == [{"a": 0.25, "b": 0.5}]
    body = error_body(mtrec.DataError("column 'x', row 3: bad", column="x", row=np.int64(3)))
    assert body == {"error": "column 'x', row 3: bad", "column": "x", "row": 3}


def test_rows_are_checked_before_prediction(trained_adult_mptrec, adult):
    predictor = QuantizedModel.from_model(trained_adult_mptrec[0], {}).predictor
    rows = adult.test.head(2).drop(columns=LABELS).to_dict(orient="records")
    assert set(predictor.predict_rows(rows)) == {"income", "married"}
    with pytest.raises(mtrec.DataError, match="row 1: feature 'age' is missing"):
        predictor.frame_of_rows([rows[0], {k: v for k, v in rows[1].items() if k != "age"}])
    with pytest.raises(mtrec.DataError, match="row 0: expected a JSON object"):
        predictor.frame_of_rows([[1, 2]])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_serve_answers_valid_and_invalid_requests_on_loopback(trained_adult_mptrec, adult, tmp_path):
    from mtrec.serve import cluster_temp_dir, start, stop

    model = trained_adult_mptrec[0]
    checkpoint = mtrec.save(QuantizedModel.from_model(model, preset_plan(model, "int8")), tmp_path / "q")
    port = _free_port()
    rows = adult.test.head(5).drop(columns=LABELS).to_dict(orient="records")
    bad_type = dict(rows[0], occupation=["a", "b"])
    missing = {k: v for k, v in rows[0].items() if k != "workclass"}
    temp_dir = None
    try:
        url = start(checkpoint, replicas=1, port=port)
        assert url == f"http://127.0.0.1:{port}"
        temp_dir = cluster_temp_dir()
        status, health = _request(url + "/health")
        assert status == 200 and health["status"] == "ok" and health["tasks"] == ["income", "married"]
        status, out = _request(url + "/predict", "POST", json.dumps(rows).encode())
        assert status == 200 and len(out["predictions"]) == 5
        expected = mtrec.load(checkpoint).predict_array(adult.test.head(5))
        got = np.array([[p["income"], p["married"]] for p in out["predictions"]])
        assert np.allclose(got, expected, atol=1e-6)
        for body, fragment in ((b"{not json", "not valid JSON"), (b'{"rows": 1}', "JSON list"),
                               (json.dumps([missing]).encode(), "feature 'workclass' is missing"),
                               (json.dumps([bad_type]).encode(), "column 'occupation', row 0")):
            status, err = _request(url + "/predict", "POST", body)
            assert status == 400 and fragment in err["error"], (status, err)
        assert _request(url + "/nope")[0] == 404
        assert _request(url + "/predict", "POST", json.dumps(rows[:1]).encode())[0] == 200
    finally:
        stop()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
    assert temp_dir is not None and not os.path.exists(temp_dir)
    deadline = time.monotonic() + 20
    while _processes_mentioning(temp_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _processes_mentioning(temp_dir)
