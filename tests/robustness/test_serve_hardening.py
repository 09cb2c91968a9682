"""Issue 13 cases 2 and 10: the endpoint listens on loopback only and holds against hostile requests and a dying
cluster. One loopback service (one replica) is started for the module; the CLI is run as a subprocess where its
exit code is the point.

Case 9 through the endpoint: the served checkpoint is calibrated int8 (every table and dense layer); rows sent
alone and in random batches by 8 concurrent clients (so Serve merges requests into one network pass) come back
bit-identical to in-process scoring.

Case 2: Ray 2.60's replica binds its inter-deployment gRPC server to `[::]:0` with no option to change it; mtrec
rebinds it to the node IP (mtrec.serve.grpc_bind). This test lists every listening socket of the service's
processes, so a Ray upgrade that opens another one beyond loopback is noticed.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import mtrec
from mtrec.errors import UsageError
from mtrec.quant import quantize

ROOT = Path(__file__).resolve().parents[2]
LABELS = ["income", "married", "education"]
LIMIT = 1 << 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(url + "/predict", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _listening(pids: set[int]) -> list[tuple[str, str, str]]:
    """(protocol, local address, process) of every listening TCP and bound UDP socket of `pids`."""
    rows = []
    for proto, flag in (("tcp", "-ltnpH"), ("udp", "-lunpH")):
        out = subprocess.run(["ss", flag], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            fields = line.split()
            owners = {int(p.split("=")[1]) for p in fields[-1].split(",") if p.startswith("pid=")}
            for pid in owners & pids:
                rows.append((proto, fields[3], Path(f"/proc/{pid}/comm").read_text().strip()))
    return rows


def _children(pid: int) -> set[int]:
    found, frontier = set(), {pid}
    while frontier:
        nxt = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                if parent in frontier and int(entry.name) not in found:
                    nxt.add(int(entry.name))
        found |= nxt
        frontier = nxt
    return found


def _is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]").split("%")[0]
    if host == "*":
        return False
    ip = ipaddress.ip_address(host)
    return ip.is_loopback or (isinstance(ip, ipaddress.IPv6Address) and bool(ip.ipv4_mapped)
                              and ip.ipv4_mapped.is_loopback)


@pytest.fixture(scope="module")
def checkpoint(adult, trained_adult_mptrec, tmp_path_factory):
    """An int8 checkpoint (every table and dense layer int8)."""
    q = quantize(trained_adult_mptrec[0], adult.valid, mode="fully_quant", progress=False)
    return mtrec.save(q, tmp_path_factory.mktemp("serve") / "int8")


@pytest.fixture(scope="module")
def service(checkpoint):
    from mtrec.serve import cluster_temp_dir, start, stop

    port = _free_port()
    try:
        url = start(checkpoint, replicas=1, port=port, max_request_bytes=LIMIT)
        yield url, port, cluster_temp_dir()
    finally:
        stop()


@pytest.fixture(scope="module")
def rows(adult):
    return adult.test.head(3).drop(columns=LABELS).to_dict(orient="records")


def test_every_socket_of_the_service_is_on_loopback(service):
    url, port, _ = service
    sockets = _listening(_children(os.getpid()) | {os.getpid()})  # the driver, raylet, GCS and every Ray worker
    assert any(addr.endswith(f":{port}") for _, addr, _ in sockets), sockets
    assert any(name.startswith("ray::ServeRepl") for _, _, name in sockets), sockets  # the replica's gRPC server
    beyond = [s for s in sockets if not _is_loopback(s[1])]
    assert not beyond, f"sockets beyond loopback: {beyond}"


def test_oversized_body_is_413_and_the_service_keeps_answering(service, rows):
    url = service[0]
    big = json.dumps(rows * (LIMIT // len(json.dumps(rows)) + 1)).encode()
    assert len(big) > LIMIT
    status, err = _post(url, big)
    assert status == 413 and f"limit of {LIMIT} bytes" in err["error"], (status, err)
    status, out = _post(url, json.dumps(rows).encode())
    assert status == 200 and len(out["predictions"]) == len(rows)


def test_deeply_nested_json_is_400(service):
    status, err = _post(service[0], b"[" * 200_000 + b"]" * 200_000)
    assert status == 400 and "nested too deeply" in err["error"], (status, err)
    status, err = _post(service[0], json.dumps([{"age": [[[[[[1]]]]]]}]).encode())
    assert status == 400, (status, err)


def test_a_second_service_on_a_served_port_is_refused(service, checkpoint):
    from mtrec.serve import start

    url, port, _ = service
    with pytest.raises(UsageError, match=f"port {port} on 127.0.0.1 is already in use"):
        start(checkpoint, port=port)
    proc = subprocess.run([sys.executable, "-m", "mtrec.cli", "serve", "--checkpoint", str(checkpoint), "--port",
                           str(port)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 2 and "already in use" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert _post(url, b"[]")[0] == 400  # the first service still answers


def test_a_row_scores_the_same_alone_and_in_any_concurrent_batch(service, checkpoint, adult):
    url = service[0]
    rows = adult.test.head(40).drop(columns=LABELS).reset_index(drop=True)
    q = mtrec.load(checkpoint)
    expected = q.predict_array(rows)
    records = rows.to_dict(orient="records")

    def client(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(6):
            idx = rng.choice(len(records), size=int(rng.integers(1, 25)))
            status, body = _post(url, json.dumps([records[i] for i in idx]).encode())
            assert status == 200, body
            out.append((idx, np.array([[p[t] for t in q.tasks] for p in body["predictions"]], dtype=np.float32)))
        return out

    with ThreadPoolExecutor(8) as pool:
        answers = [a for part in pool.map(client, range(8)) for a in part]
    for idx, got in answers:
        assert np.array_equal(got, expected[idx]), (int((got != expected[idx]).sum()),
                                                    float(np.abs(got - expected[idx]).max()))


@pytest.mark.slow
def test_cli_exits_nonzero_when_its_cluster_dies(checkpoint):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mtrec.cli", "serve", "--checkpoint", str(checkpoint), "--port",
                             str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            start_new_session=True)
    started: set[int] = set()
    try:
        assert "serving" in proc.stdout.readline()
        started = _children(proc.pid)
        for pid in started:
            name = Path(f"/proc/{pid}/comm").read_text().strip() if Path(f"/proc/{pid}").exists() else ""
            if name in ("raylet", "gcs_server"):
                os.kill(pid, signal.SIGKILL)
        code = proc.wait(timeout=120)  # mtrec's port watch (or Ray's own driver shutdown) ends it
        assert code != 0, (code, proc.stderr.read()[-500:])
    finally:
        for pid in started | {proc.pid}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
